"""The accommodation ranking model: the search table, synthetic searches, the property catalogue, list features,
the learning-to-rank network and its serving signature, baselines and metrics, and the runtime."""
