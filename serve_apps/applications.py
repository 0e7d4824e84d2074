"""The Serve applications this package provides, by ``import_path``, and the ``args`` each takes: what tools that
check a Serve config (``cluster``'s validation) need to know without importing the applications (and TensorFlow).
"""

from __future__ import annotations

from serve_apps.core.settings import IngressOptions, ReplicaOptions, TripsOptions

# import_path -> the type of its args; a model application (ReplicaOptions) also takes ModelSettings as the
# user_config of its deployment.
APPLICATIONS: dict[str, type[IngressOptions]] = {
    "serve_apps.destinations:app": ReplicaOptions,
    "serve_apps.accommodations:app": ReplicaOptions,
    "serve_apps.trips:app": TripsOptions,
}
