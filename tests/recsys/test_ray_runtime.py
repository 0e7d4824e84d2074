import json

from recsys.ray_runtime import JOB_CONFIG_VARIABLE, driver_runtime_env

WORKER_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_a_driver_outside_a_job_asks_for_every_variable():
    assert driver_runtime_env(WORKER_ENV, environ={}) == {"env_vars": WORKER_ENV}


def test_a_job_driver_leaves_out_what_its_job_sets_which_ray_init_would_refuse():
    job = {"runtime_env": {"working_dir": "https://git.example/archive/abc.zip",
                           "env_vars": {"TF_USE_LEGACY_KERAS": "1", "DATA_URI": "hdfs://nn/trips"}}}
    environ = {JOB_CONFIG_VARIABLE: json.dumps(job)}
    assert driver_runtime_env(WORKER_ENV, environ) == {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}}
