"""The slot's reconcile loop, below HTTP, with small real SavedModels: first load, hot swap, superseded loads,
following LATEST, and every kind of load failure reported."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import pytest

from recsys.artifact_store import ModelStore
from recsys.errors import StoreUnavailable
from recsys.destinations.runtime import DestinationRuntime
from serve_apps.core.settings import ModelSettings, ReplicaOptions
from serve_apps.core.slot import ModelSlot
from tests.recsys.test_loaded_model import publish


@pytest.fixture
def store(tmp_path) -> ModelStore:
    store = ModelStore(str(tmp_path / "models"))
    for version, units in (("v1", 16), ("v2", 24), ("v3", 12)):
        publish(store, version, tmp_path / "build", hidden_units=units)
    (tmp_path / "models" / "destinations" / "LATEST").write_text("v1\n")
    return store


def settings(store: ModelStore, version: str = "latest", **changes) -> ModelSettings:
    return ModelSettings(model_uri=f"{store.uri}/destinations", model_version=version, max_batch_size=8, **changes)


@pytest.fixture
def options(tmp_path) -> ReplicaOptions:
    return ReplicaOptions(cache_dir=tmp_path / "cache", load_attempts=2, load_backoff_s=0.01,
                          load_max_backoff_s=0.02)


class GatedOpen:
    """Opens runtimes like a replica does, but a version named in ``hold`` waits until released; counts how many
    opens run at once."""

    def __init__(self, hold: set[str]) -> None:
        self.hold, self.release, self.started = hold, threading.Event(), threading.Event()
        self.running = self.most_at_once = 0
        self.lock = threading.Lock()

    def __call__(self, path: Path, manifest):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if manifest.version in self.hold:
                self.started.set()
                self.release.wait(timeout=30)
            return DestinationRuntime.open(path, manifest)
        finally:
            with self.lock:
                self.running -= 1


def test_the_first_load_blocks_later_versions_swap_in_the_background(store, options):
    async def scenario():
        opener = GatedOpen(hold={"v2"})
        slot = ModelSlot(options, opener)
        await slot.apply(settings(store, "v1"))
        assert slot.current.version == "v1" and slot._task is not None
        await slot.apply(settings(store, "v2"))
        await asyncio.to_thread(opener.started.wait, 10)
        assert slot.current.version == "v1"  # still serving while v2 loads
        assert slot.loading_version == "v2"
        opener.release.set()
        await wait_until(lambda: slot.current.version == "v2")
        assert slot.loading_version is None and slot.last_error is None
        await slot.close()
    asyncio.run(scenario())


def test_a_superseded_load_stops_and_status_names_the_version_really_loading(store, options):
    async def scenario():
        opener = GatedOpen(hold={"v2"})
        slot = ModelSlot(options, opener)
        await slot.apply(settings(store, "v1"))
        await slot.apply(settings(store, "v2"))
        await asyncio.to_thread(opener.started.wait, 10)
        await slot.apply(settings(store, "v3"))  # while v2 is still opening
        assert slot.loading_version == "v2"  # what the loader is busy with, not cleared by the change
        opener.release.set()
        await wait_until(lambda: slot.current.version == "v3")
        assert slot.loading_version is None
        assert opener.most_at_once == 1  # v3 never loaded beside v2
        assert slot.last_error is None  # an abandoned load is not a failure
        await slot.close()
    asyncio.run(scenario())


@pytest.mark.parametrize(("version", "fault", "error"), [
    ("v9", None, "ArtifactNotFound: .* not found"),
    ("v2", "warm-up", "RuntimeError: out of GPU memory"),
], ids=["missing", "error-during-warm-up"])
def test_a_version_that_fails_to_load_is_refused_reported_and_not_retried(store, options, version, fault, error):
    async def scenario():
        opens = []

        def opener(path, manifest):
            opens.append(manifest.version)
            runtime = DestinationRuntime.open(path, manifest)
            if fault == "warm-up" and manifest.version == version:
                def fail(shapes):
                    raise RuntimeError("out of GPU memory")
                runtime.warm_up = fail
            return runtime

        slot = ModelSlot(options, opener)
        await slot.apply(settings(store, "v1"))
        await slot.apply(settings(store, version))
        await wait_until(lambda: slot.last_error is not None)
        assert slot.current.version == "v1"
        assert slot.last_error.version == version
        assert re.search(error, slot.last_error.error)
        attempts = opens.count(version)
        await slot.check()  # the next poll: a permanent failure is not tried again
        assert opens.count(version) == attempts
        await slot.close()
    asyncio.run(scenario())


def test_a_store_outage_during_a_swap_is_retried_on_the_next_check(store, options, monkeypatch):
    async def scenario():
        slot = ModelSlot(options, DestinationRuntime.open)
        await slot.apply(settings(store, "v1", latest_poll_s=3600))
        real_fetch, down = ModelStore.fetch, [True]

        def fetch(self, *args):
            if down[0]:
                raise StoreUnavailable("store unreachable: connection refused")
            return real_fetch(self, *args)

        monkeypatch.setattr(ModelStore, "fetch", fetch)
        await slot.apply(settings(store, "v2", latest_poll_s=3600))
        await wait_until(lambda: slot.last_error is not None)
        assert slot.current.version == "v1" and "StoreUnavailable" in slot.last_error.error
        down[0] = False
        await slot.check()
        assert slot.current.version == "v2" and slot.last_error is None
        await slot.close()
    asyncio.run(scenario())


def test_latest_is_followed_after_a_publish(store, options, tmp_path):
    async def scenario():
        slot = ModelSlot(options, DestinationRuntime.open)
        await slot.apply(settings(store, "latest", latest_poll_s=0.2))
        assert slot.current.version == "v1" and slot.target_version == "v1"
        (tmp_path / "models" / "destinations" / "LATEST").write_text("v3\n")
        await wait_until(lambda: slot.current.version == "v3")
        assert slot.target_version == "v3"
        await slot.close()
    asyncio.run(scenario())


def test_a_larger_batch_size_is_warmed_before_it_is_used(store, options):
    async def scenario():
        warmed = []

        def opener(path, manifest):
            runtime = DestinationRuntime.open(path, manifest)
            real = runtime.warm_up
            runtime.warm_up = lambda shapes: warmed.append(list(shapes)) or real(shapes)
            return runtime

        slot = ModelSlot(options, opener)
        await slot.apply(settings(store, "v1"))
        warmed.clear()
        await slot.apply(settings(store, "v1").model_copy(update={"max_batch_size": 20}))
        assert warmed == [[12, 16, 20]]  # 1..8 were warmed at load
        await slot.apply(settings(store, "v1").model_copy(update={"max_batch_size": 10}))
        assert warmed == [[12, 16, 20], [10]]  # smaller, but 10 is a new shape
        assert slot.shapes == [1, 2, 3, 4, 6, 8, 10]
        await slot.close()
    asyncio.run(scenario())


async def wait_until(condition, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def test_a_version_its_vet_rejects_is_refused_and_the_old_one_keeps_serving(store, options):
    """The replica's vet (the response-shift check) sees the serving and the loaded model before the swap; what it
    raises refuses the version for good, as a failed load does."""
    vetted = []

    def vet(serving, loaded):
        vetted.append((serving.version, loaded.version))
        if loaded.version == "v2":
            raise ValueError("answers too differently")

    async def scenario():
        slot = ModelSlot(options, DestinationRuntime.open, vet=vet)
        await slot.apply(settings(store, "v1"))
        await slot.apply(settings(store, "v2"))
        await wait_until(lambda: slot.last_error is not None)
        assert slot.current.version == "v1" and slot.last_error.version == "v2"
        assert slot.last_error.error == "ValueError: answers too differently"
        await slot.check()  # refused for good: not loaded again
        await slot.apply(settings(store, "v3"))
        await wait_until(lambda: slot.current.version == "v3")
        assert vetted == [("v1", "v2"), ("v1", "v3")]
        await slot.close()
    asyncio.run(scenario())
