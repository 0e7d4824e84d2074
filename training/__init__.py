"""Ray Train jobs that train the project's models and publish them to the model store.

Ray Train's TensorFlow backend needs Keras 2 (tf-keras) on every worker *before* TensorFlow is imported there,
otherwise MultiWorkerMirroredStrategy fails under Keras 3 (ray#47464); the flag is set here, on import of any
job in this package, and passed on to workers through their runtime environment.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
