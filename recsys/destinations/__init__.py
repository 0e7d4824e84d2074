"""The next-destination model: trip features and vocabularies, the network and its serving signature, baselines,
and the runtime that serving and batch scoring call."""
