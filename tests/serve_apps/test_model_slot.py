"""Loading, warming, retrying and swapping models, below HTTP, with a small real SavedModel."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from recsys import signature
from recsys.artifact_store import ModelStore
from recsys.errors import ArtifactNotFound, StoreUnavailable
from recsys.features import Vocabulary
from recsys.manifest import Manifest, Metrics
from recsys.model import DestinationRecommender, ModelConfig, build_network
from serve_apps import model_slot
from serve_apps.model_slot import ModelSlot, batch_shapes, load_model
from serve_apps.settings import ModelSettings, ReplicaOptions

VOCABULARY = Vocabulary(cities=list(range(101, 131)), booker_countries=["Elbonia"], device_classes=["mobile"],
                        affiliates=[7])


def publish(store: ModelStore, version: str, tmp: Path, hidden_units: int = 16) -> None:
    config = ModelConfig(history_length=4, city_embedding_dim=8, hidden_units=hidden_units)
    DestinationRecommender(build_network(config, VOCABULARY.sizes()), VOCABULARY, config).save(
        str(tmp / version / "saved_model"))
    store.publish(tmp / version, Manifest(
        name="destinations", version=version, created_at=dt.datetime.now(dt.UTC), frameworks={},
        signature=signature.describe(), vocabulary_sizes=VOCABULARY.sizes(), model=config.model_dump(),
        training={}, metrics=Metrics(accuracy_at_4=0.1, baselines={"markov": 0.0, "popularity": 0.0},
                                     test_trips=0), files={}))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ModelStore:
    root = tmp_path_factory.mktemp("slot")
    store = ModelStore(str(root / "models"))
    publish(store, "v1", root)
    publish(store, "v2", root, hidden_units=24)
    return store


def settings(store: ModelStore, version: str = "latest", **changes) -> ModelSettings:
    return ModelSettings(model_uri=f"{store.uri}/destinations", model_version=version, max_batch_size=8, **changes)


@pytest.fixture
def options(tmp_path) -> ReplicaOptions:
    return ReplicaOptions(cache_dir=tmp_path / "cache", load_attempts=3, load_backoff_s=0.01,
                          load_max_backoff_s=0.02)


def query(cities, k=4):
    return SimpleNamespace(cities=cities, booker_country="Elbonia", device_class="mobile", affiliate_id=None, k=k)


def test_a_loaded_model_answers_each_query_with_its_own_k(store, options):
    model = load_model(settings(store, "v1"), options)
    assert model.version == "v1" and model.load_seconds > 0
    answers = model.recommend([query([101], k=1), query(list(range(101, 131)), k=5), query([999])], [1, 2, 4])
    assert [len(cities) for cities, _ in answers] == [1, 5, 4]
    assert all(set(cities) <= set(VOCABULARY.cities) for cities, _ in answers)


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
    model = load_model(settings(store, "v1"), options)
    queries = [query([101 + i, 102 + i], k=3) for i in range(5)]
    alone = [model.recommend([q], [1])[0] for q in queries]
    seen = []
    predict = model.predictor.predict
    monkeypatch.setattr(model.predictor, "predict", lambda cities, *rest: seen.append(len(cities)) or
                        predict(cities, *rest))
    together = model.recommend(queries, batch_shapes(8))
    assert seen == [6]  # 5 rows padded to the next shape
    assert [cities for cities, _ in together] == [cities for cities, _ in alone]
    for (_, batched), (_, single) in zip(together, alone):
        assert batched == pytest.approx(single, rel=1e-5)


def test_an_unreachable_store_is_retried_with_back_off(store, options, monkeypatch, caplog):
    real_fetch, calls = ModelStore.fetch, []

    def flaky(self, *args):
        calls.append(1)
        if len(calls) < 3:
            raise StoreUnavailable("hdfs://namenode:8020/models: store unreachable: connection refused")
        return real_fetch(self, *args)

    monkeypatch.setattr(ModelStore, "fetch", flaky)
    assert load_model(settings(store, "v1"), options).version == "v1"
    assert len(calls) == 3
    assert "model store unreachable (attempt 1/3), retrying in 0.0 s" in caplog.text
    assert "model store unreachable (attempt 2/3), retrying in 0.0 s" in caplog.text


def test_retries_are_bounded(store, options, monkeypatch):
    def down(self, *args):
        raise StoreUnavailable("store unreachable")

    monkeypatch.setattr(ModelStore, "fetch", down)
    with pytest.raises(StoreUnavailable):
        load_model(settings(store, "v1"), options)


def test_a_missing_version_is_not_retried(store, options, monkeypatch):
    real_fetch, calls = ModelStore.fetch, []

    def counted(self, *args):
        calls.append(1)
        return real_fetch(self, *args)

    monkeypatch.setattr(ModelStore, "fetch", counted)
    with pytest.raises(ArtifactNotFound):
        load_model(settings(store, "v9"), options)
    assert len(calls) == 1


def test_the_first_load_blocks_later_versions_swap_in_the_background(store, options):
    async def scenario():
        slot = ModelSlot(options)
        await slot.apply(settings(store, "v1"))
        assert slot.current.version == "v1"
        await slot.apply(settings(store, "v2"))
        assert slot.current.version == "v1"  # still serving while v2 loads
        assert slot.loading_version == "v2"
        await slot._task
        assert slot.current.version == "v2" and slot.loading_version is None
    asyncio.run(scenario())


def test_a_failed_load_keeps_the_old_model_and_records_the_error(store, options):
    async def scenario():
        slot = ModelSlot(options)
        await slot.apply(settings(store, "v1"))
        await slot.apply(settings(store, "v9"))
        await slot._task
        assert slot.current.version == "v1"
        assert slot.last_error.version == "v9" and "not found" in slot.last_error.error
    asyncio.run(scenario())


def test_a_larger_batch_size_is_warmed_before_it_is_used(store, options, monkeypatch):
    async def scenario():
        slot = ModelSlot(options)
        await slot.apply(settings(store, "v1"))
        warmed = []
        monkeypatch.setattr(model_slot.LoadedModel, "warm_up", lambda self, shapes: warmed.append(shapes))
        await slot.apply(settings(store, "v1", batch_wait_timeout_s=0.001).model_copy(update={"max_batch_size": 20}))
        assert warmed == [[12, 16, 20]]  # 1..8 were warmed at load
        await slot.apply(settings(store, "v1").model_copy(update={"max_batch_size": 10}))
        assert warmed == [[12, 16, 20], [10]]  # smaller, but 10 is a new shape
        assert slot._task is None  # same version: nothing to load
    asyncio.run(scenario())
