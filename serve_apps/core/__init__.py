"""The serving core: what every model replica does, whatever the model (load, verify, warm up, hot swap, batch,
isolate bad rows, shed load, report). A model app extends :class:`serve_apps.core.replica.ModelReplica`."""
