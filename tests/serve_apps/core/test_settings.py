from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from serve_apps.applications import APPLICATIONS
from serve_apps.core.settings import ModelSettings, ReplicaOptions
from tests.support import ROOT


@pytest.mark.parametrize(("uri", "store", "name"), [
    ("hdfs://namenode:8020/models/destinations", "hdfs://namenode:8020/models", "destinations"),
    (".data/models/destinations/", ".data/models", "destinations"),
    ("destinations", ".", "destinations"),
], ids=["hdfs", "relative-trailing-slash", "bare-name"])
def test_model_uri_is_a_store_and_a_model_name(uri, store, name):
    settings = ModelSettings(model_uri=uri)
    assert (settings.store_uri, settings.model_name, settings.model_version) == (store, name, "latest")


@pytest.mark.parametrize(("change", "message"), [
    ({"model_uri": "hdfs://nn/models/.."}, r"model name \(last segment of model_uri\) must match"),
    ({"model_version": "../v1"}, "model_version must match"),
    ({"max_batch_size": 0}, "greater than or equal to 1"),
    ({"batch_wait_timeout_s": -1}, "greater than or equal to 0"),
    ({"max_batch_size": 64, "warmup": True}, "Extra inputs are not permitted"),
], ids=["uri-name", "version", "batch-size", "timeout", "unknown-key"])
def test_invalid_user_config_is_rejected_naming_the_field(change, message):
    with pytest.raises(ValidationError, match=message):
        ModelSettings.model_validate({"model_uri": ".data/models/destinations", **change})


def test_replica_options_defaults_and_validation():
    assert ReplicaOptions().load_attempts == 30
    with pytest.raises(ValidationError, match="load_attempts"):
        ReplicaOptions(load_attempts=0)


@pytest.mark.parametrize(("args", "error"), [
    ({"queue_budget_ms": 100, "inflight_target_ms": 25}, None),
    ({"queue_budget_ms": 100, "inflight_target_ms": 0}, None),
    ({"queue_budget_ms": 100, "inflight_target_ms": 49}, None),
    ({"queue_budget_ms": 100, "inflight_target_ms": 50},
     r"inflight_target_ms: must be below half of queue_budget_ms \(100\), got 50; a queued request would have no "
     r"time"),
    ({"inflight_target_ms": -1}, "inflight_target_ms"),
], ids=["adaptive", "fixed", "just-below-half", "half-the-budget", "negative"])
def test_the_in_flight_target_must_leave_the_queue_some_of_the_budget(args, error):
    if error is None:
        assert ReplicaOptions(**args).inflight_target_ms == args["inflight_target_ms"]
    else:
        with pytest.raises(ValidationError, match=error):
            ReplicaOptions(**args)


@pytest.mark.parametrize("name", ["local.yaml", "production.yaml"])
def test_shipped_serve_configs_are_valid(name):
    config = yaml.safe_load((ROOT / "configs" / "serve" / name).read_text())
    ServeDeploySchema.model_validate(config)
    assert {a["import_path"] for a in config["applications"]} == set(APPLICATIONS)
    for application in config["applications"]:
        options = APPLICATIONS[application["import_path"]].model_validate(application["args"])
        if isinstance(options, ReplicaOptions):
            for deployment in application["deployments"]:
                ModelSettings.model_validate(deployment["user_config"])
