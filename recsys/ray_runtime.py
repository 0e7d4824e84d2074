"""The runtime environment a job's driver (training, precompute) asks Ray for."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

# Set by Ray's job supervisor for a driver it starts (ray.runtime_env's RAY_JOB_CONFIG_JSON_ENV_VAR).
JOB_CONFIG_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def driver_runtime_env(env_vars: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> dict:
    """``env_vars`` for every worker, less those the Ray job running this driver already sets: ray.init refuses a
    runtime env that repeats a key of its job's (a RayJob's ``runtimeEnvYAML``), and the job's reach every worker."""
    job = json.loads(environ.get(JOB_CONFIG_VARIABLE) or "{}").get("runtime_env") or {}
    given = job.get("env_vars") or {}
    return {"env_vars": {key: value for key, value in env_vars.items() if key not in given}}
