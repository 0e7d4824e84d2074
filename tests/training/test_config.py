from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recsys.errors import ConfigError
from training.config import load_config as load
from training.destinations import DestinationsConfig

ROOT = Path(__file__).resolve().parents[2]


def load_config(path: Path, environ: dict):
    return load(path, environ, DestinationsConfig)

VALID = {
    "data_uri": "data/trips",
    "store_uri": "hdfs://namenode:8020/models",
    "checkpoint_uri": "/tmp/checkpoints",
    "hyperparameters": {"epochs": 3},
}


def write(tmp_path: Path, settings) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.mark.parametrize("name", ["smoke.yaml", "destinations.yaml", "destinations-gpu.yaml"])
def test_shipped_configs_are_valid(name):
    config = load_config(ROOT / "configs" / "train" / name, environ={})
    assert config.model_name == "destinations"


def test_defaults_and_per_worker_batch(tmp_path):
    config = load_config(write(tmp_path, {**VALID, "num_workers": 4,
                                          "hyperparameters": {"epochs": 3, "batch_size": 1000}}), environ={})
    assert config.model.encoder == "gru"
    assert config.per_worker_batch_size == 250


def test_environment_overrides_the_uris(tmp_path):
    config = load_config(write(tmp_path, VALID), environ={
        "DATA_URI": "hdfs://nn:8020/trips", "MODEL_STORE_URI": "hdfs://nn:8020/models", "CHECKPOINT_URI": "",
    })
    assert config.data_uri == "hdfs://nn:8020/trips"
    assert config.store_uri == "hdfs://nn:8020/models"
    assert config.checkpoint_uri == "/tmp/checkpoints"  # empty variables do not override


@pytest.mark.parametrize(("change", "message"), [
    ({"hyperparameters": {"epochs": 0}}, "hyperparameters.epochs: Input should be greater than or equal to 1, got 0"),
    ({"hyperparameters": {"epochs": 2, "learning_rate": -1}},
     "hyperparameters.learning_rate: Input should be greater than 0, got -1"),
    ({"num_workers": 0}, "num_workers: Input should be greater than or equal to 1, got 0"),
    ({"model": {"encoder": "transformer"}}, "model.encoder: Input should be 'gru' or 'pooled', got 'transformer'"),
    ({"model_name": "../x"}, "model_name: Value error, model_name must match"),
    ({"data_uri": None}, "data_uri: Input should be a valid string, got None"),
    ({"epochs": 3}, "epochs: Extra inputs are not permitted, got 3"),
    ({"store_uri": ""}, "store_uri: String should have at least 1 character, got ''"),
], ids=["epochs", "learning-rate", "workers", "encoder", "model-name", "data-uri", "unknown-key", "empty-store"])
def test_invalid_values_name_the_file_and_the_field(tmp_path, change, message):
    path = write(tmp_path, {**VALID, **change})
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_a_missing_field_is_named(tmp_path):
    settings = dict(VALID)
    del settings["store_uri"]
    with pytest.raises(ConfigError, match=r"train.yaml: store_uri: Field required$"):
        load_config(write(tmp_path, settings), environ={})


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read config: No such file or directory"):
        load_config(tmp_path / "nope.yaml", environ={})
    (tmp_path / "bad.yaml").write_text("a: [1,")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(tmp_path / "bad.yaml", environ={})
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping of settings, got list"):
        load_config(tmp_path / "list.yaml", environ={})
