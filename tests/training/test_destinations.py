"""The training job end to end: the real CLI, 2 Ray Train workers, a published version; and its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from recsys.artifact_store import ModelStore
from recsys.destinations.baselines import accuracy_at_k
from recsys.destinations.features import examples_from_trips
from recsys.manifest import SAVED_MODEL_DIR
from recsys.destinations.runtime import Predictor
from tests.support import SMOKE_CONFIG, job_config, run_cli
from training import destinations, job


def test_training_publishes_a_version_that_beats_both_baselines(trained_model):
    manifest = ModelStore(trained_model.store_uri).manifest(trained_model.name, "latest")
    assert manifest.version == trained_model.version
    metrics = manifest.metrics
    assert metrics.accuracy_at_4 >= metrics.baselines["markov"] + 0.02
    assert metrics.baselines["markov"] > metrics.baselines["popularity"] + 0.1
    assert manifest.training["num_workers"] == 2
    assert manifest.frameworks["tensorflow"].startswith("2.21")
    assert manifest.vocabulary_sizes["cities"] > 100
    assert "saved_model/saved_model.pb" in manifest.files
    assert trained_model.summary["metrics"] == metrics.model_dump()


def test_epoch_progress_is_shown(trained_model):
    epochs = yaml.safe_load(SMOKE_CONFIG.read_text())["hyperparameters"]["epochs"]
    for epoch in (1, epochs):
        assert f"epoch {epoch}/{epochs}: loss" in trained_model.output


def test_the_published_model_reproduces_its_reported_accuracy(trained_model, tmp_path):
    store = ModelStore(trained_model.store_uri)
    local = store.fetch(trained_model.name, trained_model.version, tmp_path / "cache")
    examples = examples_from_trips(pq.read_table(trained_model.data), local.manifest.model["history_length"])
    test = (examples["split"] == "test") & examples["is_last"]
    top = Predictor(local.path / SAVED_MODEL_DIR).predict_in_batches(
        examples["history"][test], examples["booker_country"][test], examples["device_class"][test],
        examples["affiliate_id"][test], k=4)
    assert int(test.sum()) == local.manifest.metrics.test_trips
    assert accuracy_at_k(top, examples["label"][test]) == pytest.approx(local.manifest.metrics.accuracy_at_4)


def test_checkpoints_live_in_ray_train_storage(trained_model):
    runs = list((Path(trained_model.store_uri).parent / "checkpoints").glob(f"destinations-{trained_model.version}"))
    assert len(runs) == 1
    checkpoints = sorted(p for p in runs[0].glob("checkpoint_*") if p.is_dir())
    assert 1 <= len(checkpoints) <= 3  # the best two by validation accuracy@4, and the latest for resuming
    assert {p.name for p in checkpoints[0].iterdir()} >= {"weights.h5", "training_state.json"}


def _wrong_schema(tmp_path: Path, smoke_data: Path) -> str:
    table = pq.read_table(smoke_data).slice(0, 100)
    (tmp_path / "wrong").mkdir()
    pq.write_table(table.drop_columns(["city_id"]), tmp_path / "wrong" / "part-0.parquet")
    return str(tmp_path / "wrong")


@pytest.mark.parametrize(("case", "message"), [
    ("missing-data", "nowhere: data path does not exist"),
    ("empty-data", "empty: no .parquet files under this path"),
    ("wrong-schema", "wrong/part-0.parquet: column 'city_id' is missing"),
    ("invalid-value", "hyperparameters.learning_rate: Input should be greater than 0, got 0"),
    ("unwritable-store", "a-file/models"),
])
def test_bad_input_fails_with_one_line_and_publishes_nothing(tmp_path, smoke_data, capsys, case, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("")
    data = {"missing-data": str(tmp_path / "nowhere"), "empty-data": str(tmp_path / "empty"),
            "wrong-schema": _wrong_schema(tmp_path, smoke_data) if case == "wrong-schema" else ""}.get(case)
    changes = {"data_uri": data or str(smoke_data)}
    if case == "invalid-value":
        changes["hyperparameters"] = {"epochs": 1, "learning_rate": 0}
    config = job_config(SMOKE_CONFIG, tmp_path, **changes)
    environ = {"MODEL_STORE_URI": str(tmp_path / "a-file" / "models")} if case == "unwritable-store" else {}

    assert job.main(destinations.TASK, ["--config", str(config)], environ=environ) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "models").exists()


def test_the_cli_exits_non_zero_with_the_error_last(tmp_path):
    result = run_cli("training.destinations", "--config", str(job_config(SMOKE_CONFIG, tmp_path, data_uri=str(tmp_path / "nowhere"))))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nowhere'}: data path does not exist"
    assert result.stdout == ""


def test_the_last_line_is_the_json_summary(trained_model):
    last = trained_model.stdout.strip().splitlines()[-1]
    assert json.loads(last)["version"] == trained_model.version
    assert np.isfinite(json.loads(last)["metrics"]["accuracy_at_4"])
