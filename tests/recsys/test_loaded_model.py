"""The shared loader: fetch, verify, open, warm up, retry, give up when no longer wanted; with a small real model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from recsys.destinations import signature
from recsys.artifact_store import ModelStore
from recsys.errors import ArtifactNotFound, ModelContractError, StoreUnavailable
from recsys.destinations.features import Vocabulary
from recsys.loaded_model import LoadCancelled, LoadOptions, batch_shapes, load
from recsys.manifest import VOCABULARY_FILE, Manifest, Metrics
from recsys.destinations.model import DestinationRecommender, ModelConfig, build_network
from recsys.destinations.runtime import DestinationRuntime

VOCABULARY = Vocabulary(cities=list(range(101, 131)), booker_countries=["Elbonia"], device_classes=["mobile"],
                        affiliates=[7])


def publish(store: ModelStore, version: str, tmp: Path, hidden_units: int = 16, model: dict | None = None) -> None:
    """A small real destination model (4 cities of history) published as ``version``."""
    config = ModelConfig(history_length=4, city_embedding_dim=8, hidden_units=hidden_units)
    DestinationRecommender(build_network(config, VOCABULARY.sizes()), VOCABULARY, config).save(
        str(tmp / version / "saved_model"))
    (tmp / version / VOCABULARY_FILE).write_text(VOCABULARY.model_dump_json())
    store.publish(tmp / version, Manifest(
        name="destinations", version=version, created_at=dt.datetime.now(dt.UTC), frameworks={},
        signature=signature.describe(), vocabulary_sizes=VOCABULARY.sizes(),
        model=config.model_dump() if model is None else model, training={},
        metrics=Metrics(accuracy_at_4=0.1, baselines={"markov": 0.0, "popularity": 0.0}, test_trips=0), files={}))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ModelStore:
    root = tmp_path_factory.mktemp("loader")
    store = ModelStore(str(root / "models"))
    publish(store, "v1", root)
    publish(store, "v2-no-history-length", root, model={"encoder": "gru"})
    return store


@pytest.fixture
def options(tmp_path) -> LoadOptions:
    return LoadOptions(cache_dir=tmp_path / "cache", load_attempts=3, load_backoff_s=0.01, load_max_backoff_s=0.02)


def load_v1(store: ModelStore, options: LoadOptions, **kwargs):
    return load(f"{store.uri}/destinations", "v1", DestinationRuntime.open, options, batch_shapes(8), **kwargs)


def test_a_loaded_model_answers_each_row_and_never_recommends_an_unknown_city(store, options):
    model = load_v1(store, options)
    assert model.version == "v1" and model.load_seconds > 0
    ids, scores = model.runtime.top_k([[101], list(range(101, 131)), [999]], ["Elbonia"] * 3, ["mobile"] * 3,
                                      [0, 7, 0], 5, batch_shapes(8))
    assert ids.shape == (3, 5) and scores.shape == (3, 5)
    assert set(ids.flatten().tolist()) <= set(VOCABULARY.cities)


def test_batch_shapes_cover_every_size_with_at_most_a_third_padding():
    assert batch_shapes(1) == [1]
    assert batch_shapes(64) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert batch_shapes(100) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 100]
    shapes = batch_shapes(1024)
    assert len(shapes) == 20
    for rows in range(1, 1025):
        padded = min(shape for shape in shapes if shape >= rows)
        assert (padded - rows) / padded <= 1 / 3


def test_padding_changes_only_the_shape_never_an_answer(store, options, monkeypatch):
    model = load_v1(store, options)
    trips = [[101 + i, 102 + i] for i in range(5)]
    alone = [model.runtime.top_k([trip], ["Elbonia"], ["mobile"], [0], 3, [1]) for trip in trips]
    seen = []
    predict = model.runtime.predictor.predict
    monkeypatch.setattr(model.runtime.predictor, "predict", lambda cities, *rest: seen.append(cities.shape) or
                        predict(cities, *rest))
    ids, scores = model.runtime.top_k(trips, ["Elbonia"] * 5, ["mobile"] * 5, [0] * 5, 3, batch_shapes(8))
    assert seen == [(6, 4)]  # 5 rows padded to the next shape, trips to the model's width
    assert ids.tolist() == [single_ids[0].tolist() for single_ids, _ in alone]
    for row, (_, single_scores) in zip(scores, alone):
        assert row.tolist() == pytest.approx(single_scores[0].tolist(), rel=1e-5)


def test_an_unreachable_store_is_retried_with_back_off(store, options, monkeypatch, caplog):
    real_fetch, calls = ModelStore.fetch, []

    def flaky(self, *args):
        calls.append(1)
        if len(calls) < 3:
            raise StoreUnavailable("hdfs://namenode:8020/models: store unreachable: connection refused")
        return real_fetch(self, *args)

    monkeypatch.setattr(ModelStore, "fetch", flaky)
    assert load_v1(store, options).version == "v1"
    assert len(calls) == 3
    assert "model store unreachable (attempt 1/3), retrying in 0.0 s" in caplog.text
    assert "model store unreachable (attempt 2/3), retrying in 0.0 s" in caplog.text


def test_retries_are_bounded(store, options, monkeypatch):
    def down(self, *args):
        raise StoreUnavailable("store unreachable")

    monkeypatch.setattr(ModelStore, "fetch", down)
    with pytest.raises(StoreUnavailable):
        load_v1(store, options)


def test_a_missing_version_is_not_retried(store, options, monkeypatch):
    real_fetch, calls = ModelStore.fetch, []

    def counted(self, *args):
        calls.append(1)
        return real_fetch(self, *args)

    monkeypatch.setattr(ModelStore, "fetch", counted)
    with pytest.raises(ArtifactNotFound):
        load(f"{store.uri}/destinations", "v9", DestinationRuntime.open, options, [1])
    assert len(calls) == 1


def test_a_manifest_without_the_history_length_is_refused_naming_the_field(store, options):
    with pytest.raises(ModelContractError, match=r"manifest.json: model.history_length: Field required"):
        load(f"{store.uri}/destinations", "v2-no-history-length", DestinationRuntime.open, options, [1])


def test_a_load_no_longer_wanted_stops_at_its_next_stage(store, options):
    warmed = []

    def open_runtime(path, manifest):
        runtime = DestinationRuntime.open(path, manifest)
        real = runtime.warm_up
        runtime.warm_up = lambda shapes: warmed.append(shapes) or real(shapes)
        return runtime

    with pytest.raises(LoadCancelled, match="abandoned"):
        load(f"{store.uri}/destinations", "v1", open_runtime, options, batch_shapes(8),
             cancelled=lambda: len(warmed) >= 2)
    assert warmed == [[1], [2]]  # stopped before the third shape


def test_unknown_features_fall_into_the_out_of_vocabulary_slot(store, options):
    model = load_v1(store, options)
    row = SimpleNamespace(cities=[123456789], country="Atlantis", device="smart-fridge", affiliate=987654)
    ids, _ = model.runtime.top_k([row.cities], [row.country], [row.device], [row.affiliate], 7, [1])
    assert ids.shape == (1, 7)
