from __future__ import annotations

import json

import yaml

from recsys.artifact_store import ModelStore
from recsys.manifest import VOCABULARY_FILE
from serve_apps.local import example_requests
from tests.support import ROOT


def _bodies(commands: dict[str, str]) -> dict[str, dict]:
    return {name: json.loads(command.split("-d '", 1)[1].rstrip("'")) for name, command in commands.items()}


def _local_config(models: dict[str, str]) -> dict:
    config = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
    for application in config["applications"]:
        if application["name"] in models:
            application["deployments"][0]["user_config"]["model_uri"] = models[application["name"]]
    return config


def test_example_requests_use_values_the_models_know(trained_model, trained_accommodations):
    commands = example_requests(_local_config({
        "destinations": f"{trained_model.store_uri}/{trained_model.name}",
        "accommodations": f"{trained_accommodations.store_uri}/{trained_accommodations.name}"}))
    assert commands["destinations"].startswith("curl -s http://127.0.0.1:8000/destinations/recommend ")
    assert commands["accommodations"].startswith("curl -s http://127.0.0.1:8000/accommodations/rank ")
    assert commands["trips"].startswith("curl -s http://127.0.0.1:8000/trips/recommend ")
    bodies = _bodies(commands)
    assert len(bodies["destinations"]["cities"]) == 3 and bodies["destinations"]["booker_country"] != "Elbonia"
    assert bodies["trips"]["cities"] == bodies["destinations"]["cities"]
    vocabulary = json.loads(ModelStore(trained_accommodations.store_uri).read_file(
        "accommodations", trained_accommodations.version, VOCABULARY_FILE))
    assert bodies["accommodations"]["city_id"] == vocabulary["cities"][0] and bodies["accommodations"]["nights"] == 2


def test_example_requests_without_models_still_give_valid_requests(tmp_path):
    bodies = _bodies(example_requests(_local_config({"destinations": str(tmp_path / "destinations"),
                                                     "accommodations": str(tmp_path / "accommodations")})))
    assert bodies["destinations"]["cities"] and bodies["destinations"]["device_class"] == "mobile"
    assert bodies["accommodations"]["city_id"] == 8183 and bodies["trips"]["checkin"]
