"""The ranking job end to end: the real CLI, 2 Ray Train workers, a published version that beats every fixed sort;
and its bad inputs."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from recsys.accommodations.baselines import ranking_metrics
from recsys.accommodations.catalogue import CATALOGUE_FILE, Catalogue
from recsys.accommodations.features import RELEVANCE, lists_from_searches
from recsys.accommodations.runtime import Ranker
from recsys.artifact_store import ModelStore
from recsys.manifest import SAVED_MODEL_DIR
from tests.support import ACCOMMODATIONS_SMOKE_CONFIG, job_config
from training import accommodations, job

BASELINES = {"popularity", "review_score", "price_ascending", "default_order"}


def test_the_ranking_model_beats_every_baseline_by_two_points_of_ndcg(trained_accommodations):
    manifest = ModelStore(trained_accommodations.store_uri).manifest("accommodations", "latest")
    metrics = manifest.metrics.model_dump()
    assert set(metrics["baselines"]) == BASELINES
    best = max(baseline["ndcg_at_10"] for baseline in metrics["baselines"].values())
    assert metrics["ndcg_at_10"] >= best + 0.02
    assert metrics["mrr"] > max(baseline["mrr"] for baseline in metrics["baselines"].values())
    assert manifest.training["num_workers"] == 2 and manifest.training["examples"]["train_searches"] > 1000
    assert {CATALOGUE_FILE, "saved_model/saved_model.pb"} <= set(manifest.files)
    assert manifest.signature.inputs["properties"].dtype == "int64"


def test_the_published_model_reproduces_its_reported_metrics(trained_accommodations, tmp_path):
    store = ModelStore(trained_accommodations.store_uri)
    local = store.fetch("accommodations", trained_accommodations.version, tmp_path / "cache")
    lists = lists_from_searches(pq.read_table(trained_accommodations.data), local.manifest.model["list_size"])
    test = {name: values[lists["split"] == "test"] for name, values in lists.items()}
    metrics = ranking_metrics(test[RELEVANCE], Ranker(local.path / SAVED_MODEL_DIR).score_shown(test))
    assert len(test[RELEVANCE]) == local.manifest.metrics.test_searches
    assert metrics["ndcg_at_10"] == pytest.approx(local.manifest.metrics.ndcg_at_10, rel=1e-4)
    catalogue = Catalogue.read(local.path / CATALOGUE_FILE)
    assert len(catalogue) > 1000


def test_progress_is_shown_every_epoch(trained_accommodations):
    epochs = yaml.safe_load(ACCOMMODATIONS_SMOKE_CONFIG.read_text())["hyperparameters"]["epochs"]
    for epoch in (1, epochs):
        assert f"epoch {epoch}/{epochs}: loss" in trained_accommodations.output
    assert json.loads(trained_accommodations.stdout.strip().splitlines()[-1])["model"] == "accommodations"


@pytest.mark.parametrize(("case", "message"), [
    ("trips-not-searches", "column 'srch_id' is missing"),
    ("invalid-value", "model.list_size: Input should be greater than or equal to 2, got 1"),
], ids=["trips-not-searches", "invalid-value"])
def test_bad_input_fails_with_one_line_and_publishes_nothing(tmp_path, smoke_data, smoke_searches, capsys, case,
                                                             message):
    changes = {"data_uri": str(smoke_data if case == "trips-not-searches" else smoke_searches)}
    if case == "invalid-value":
        changes["model"] = {"list_size": 1}
    config = job_config(ACCOMMODATIONS_SMOKE_CONFIG, tmp_path, **changes)
    assert job.main(accommodations.TASK, ["--config", str(config)], environ={}) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "models").exists()
