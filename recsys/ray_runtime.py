"""How a job's driver (training, precompute) starts or joins Ray, and the runtime environment it asks for."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import ray

# Set by Ray's job supervisor for a driver it starts (ray.runtime_env's RAY_JOB_CONFIG_JSON_ENV_VAR).
JOB_CONFIG_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def driver_runtime_env(env_vars: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> dict:
    """``env_vars`` for every worker, less those the Ray job running this driver already sets: ray.init refuses a
    runtime env that repeats a key of its job's (a RayJob's ``runtimeEnvYAML``), and the job's reach every worker."""
    job = json.loads(environ.get(JOB_CONFIG_VARIABLE) or "{}").get("runtime_env") or {}
    given = job.get("env_vars") or {}
    return {"env_vars": {key: value for key, value in env_vars.items() if key not in given}}


def start_driver(address: str | None, needed_cpus: float, env_vars: Mapping[str, str]) -> None:
    """Join the Ray at ``address`` if given, else start a private local one ("local" never attaches to someone
    else's Ray on this machine) with at least ``needed_cpus`` logical CPUs; every worker gets ``env_vars``."""
    runtime_env = driver_runtime_env(env_vars)
    if address:
        ray.init(address=address, runtime_env=runtime_env)
        return
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(needed_cpus)), runtime_env=runtime_env)
