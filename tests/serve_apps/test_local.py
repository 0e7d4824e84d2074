from __future__ import annotations

import json

import yaml

from serve_apps.local import example_request
from tests.support import ROOT


def test_example_request_uses_values_the_model_knows(trained_model):
    config = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
    config["applications"][0]["deployments"][0]["user_config"]["model_uri"] = \
        f"{trained_model.store_uri}/{trained_model.name}"
    command = example_request(config)
    body = json.loads(command.split("-d '", 1)[1].rstrip("'"))
    assert command.startswith("curl -s http://127.0.0.1:8000/destinations/recommend ")
    assert len(body["cities"]) == 3 and body["booker_country"] != "Elbonia"


def test_example_request_without_a_model_still_gives_a_valid_request(tmp_path):
    config = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
    config["applications"][0]["deployments"][0]["user_config"]["model_uri"] = str(tmp_path / "destinations")
    body = json.loads(example_request(config).split("-d '", 1)[1].rstrip("'"))
    assert body["cities"] and body["device_class"] == "mobile"
