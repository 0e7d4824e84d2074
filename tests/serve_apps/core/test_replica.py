"""What every model replica guarantees, over real HTTP on a real Serve behind HAProxy (the destination app as the
model): one caller's bad input never fails another's request, excess load gets a fast 503 with Retry-After and
nothing else, and every replica of a route converges on the version its settings name."""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import httpx
import pytest

from recsys.artifact_store import ModelStore
from tests.serving import (
    NAME,
    deploy_version,
    model_status,
    recommend,
    requests_from,
    serve_config,
    serve_deploy,
    serve_shutdown,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("serve_cluster")

POISON = {"cities": [99999999999999999999], "booker_country": "Elbonia", "device_class": "mobile"}


def test_a_poison_mix_fails_only_the_bad_callers(serve_cluster, serving_store):
    """4 clients send an id beyond int64 while 16 send valid trips: every valid request is answered 200. (With a
    queueing budget no request reaches on this shared machine: shedding is the next test's subject.)"""
    serve_deploy(serve_cluster, serve_config(serve_cluster, serving_store.uri, serving_store.good,
                                             args={"queue_budget_ms": 30_000}))
    wait_for(lambda: (status := model_status(serve_cluster)) and status["queue_budget_ms"] == 30_000,
             what="the replica with the generous budget")
    bodies = requests_from(serving_store.vocabulary(), 64, seed=4)
    statuses: dict[str, collections.Counter] = {"good": collections.Counter(), "bad": collections.Counter()}
    stop = time.monotonic() + 6

    def client(kind: str, worker: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = worker
            while time.monotonic() < stop:
                body = POISON if kind == "bad" else bodies[i % len(bodies)]
                try:
                    statuses[kind][recommend(serve_cluster, body, http).status_code] += 1
                except httpx.HTTPError as err:
                    statuses[kind][type(err).__name__] += 1
                i += 16

    threads = [threading.Thread(target=client, args=("bad", w)) for w in range(4)] + \
              [threading.Thread(target=client, args=("good", w)) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses["good"]) == {200} and statuses["good"][200] > 100, statuses
    assert set(statuses["bad"]) == {422}, statuses


def test_overload_gets_only_fast_503s_with_retry_after_beside_200s(serve_cluster, serving_store):
    """300 clients, far more than a replica's 32 in flight and 32 queued (configs/serve/local.yaml): the excess is
    refused by HAProxy or the replica with 503 and Retry-After; nothing fails otherwise and accepted requests are
    still answered."""
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    bodies = requests_from(serving_store.vocabulary(), 64, seed=5)
    outcomes: collections.Counter = collections.Counter()
    retry_after: collections.Counter = collections.Counter()

    async def client(http: httpx.AsyncClient, worker: int, stop: float) -> None:
        i = worker
        while time.monotonic() < stop:
            try:
                response = await http.post(f"{serve_cluster.url}/recommend", json=bodies[i % len(bodies)])
            except httpx.HTTPError as err:
                outcomes[type(err).__name__] += 1
                continue
            outcomes[response.status_code] += 1
            if response.status_code == 503:
                retry_after[response.headers.get("retry-after")] += 1
            i += 300

    async def flood() -> None:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            stop = time.monotonic() + 8
            await asyncio.gather(*(client(http, w, stop) for w in range(300)))

    asyncio.run(flood())
    assert set(outcomes) == {200, 503}, outcomes
    assert outcomes[503] > 0 and outcomes[200] > 0, outcomes
    assert set(retry_after) == {"1"}, retry_after


def test_every_replica_converges_on_a_newly_published_latest(serve_cluster, serving_store, tmp_path):
    """Two replicas follow ``latest``; after a publish both serve the new version (within latest_poll_s plus a
    load) and none keeps the old one."""
    source = ModelStore(serving_store.uri)
    store = ModelStore(str(tmp_path / "models"))
    for version in (serving_store.good, serving_store.other):
        local = source.fetch(NAME, version, tmp_path / "fetch")
        if version == serving_store.good:
            store.publish(local.path, local.manifest)
    serve_shutdown(serve_cluster)
    serve_deploy(serve_cluster, serve_config(serve_cluster, store.uri, "latest", replicas=2, latest_poll_s=1))

    def versions_by_replica() -> dict[str, str]:
        seen = {}
        with httpx.Client(timeout=10, headers={"Connection": "close"}) as http:  # HAProxy spreads new connections
            for _ in range(40):
                response = http.get(f"{serve_cluster.url}/model")
                if response.status_code == 200:
                    seen[response.json()["replica"]] = response.json()["version"]
        return seen

    before = wait_for(lambda: (seen := versions_by_replica()) and len(seen) == 2 and
                      set(seen.values()) == {serving_store.good} and seen, what="2 replicas on the first version")
    store.publish(local.path, local.manifest)  # serving_store.other becomes LATEST
    after = wait_for(lambda: (seen := versions_by_replica()) and set(seen) == set(before) and
                     set(seen.values()) == {serving_store.other} and seen, timeout=120,
                     what="both replicas on the new LATEST")
    assert after.keys() == before.keys()
    serve_shutdown(serve_cluster)
