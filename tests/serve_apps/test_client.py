"""The Python client (client/recsys_client) against the real destination app on Serve behind HAProxy: coalesced
calls get the answers one request each gets, a bad row fails only its own caller, shed requests are retried until
answered, and the CLI scores Parquet and CSV files through the API."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as csv
import pyarrow.parquet as pq
import pytest

from recsys_client import AsyncClient, Client, ClientOptions, Destinations, InvalidRequest, RetryPolicy
from tests.serving import deploy_version, recommend, requests_from, serve_config, serve_deploy, wait_for

pytestmark = pytest.mark.usefixtures("serve_cluster")


def base_url(cluster) -> str:
    return f"http://127.0.0.1:{cluster.http_port}"


class Counting:
    """An httpx client that counts the requests it sends and the 503s it gets."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.shed = 0
        self.http = httpx.AsyncClient(event_hooks={"request": [self._request], "response": [self._response]})

    async def _request(self, request: httpx.Request) -> None:
        self.sent.append(request.url.path)

    async def _response(self, response: httpx.Response) -> None:
        self.shed += response.status_code == 503


def same_answers(answers: list[Destinations], expected: list[dict]) -> None:
    """The same cities, in the same order, from the same version; the same scores to float32 precision (one row
    and a batch of 300 are different matrix shapes to TensorFlow, whose kernels sum in another order: a score differed
    by 2.4e-6 relative in one session's model)."""
    assert [(a.cities, a.model_version) for a in answers] == [(e["cities"], e["model_version"]) for e in expected]
    for answer, one in zip(answers, expected):
        np.testing.assert_allclose(answer.scores, one["scores"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow", "json"])
def test_coalesced_calls_get_the_answers_of_one_request_each(serve_cluster, serving_store, arrow):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    trips = requests_from(serving_store.vocabulary(), 300, seed=8)
    one_each = [recommend(serve_cluster, trip).json() for trip in trips]
    counting = Counting()

    async def coalesced() -> list[Destinations]:
        async with AsyncClient(base_url(serve_cluster), ClientOptions(linger_s=0.01, arrow=arrow),
                               http=counting.http) as client:
            return await asyncio.gather(*(client.destinations.recommend(trip) for trip in trips))

    answers = asyncio.run(coalesced())
    same_answers(answers, one_each)
    batches = [path for path in counting.sent if path.endswith("/batch")]
    assert 1 <= len(batches) < 30, batches  # 300 calls, a few requests


def test_a_bad_row_among_coalesced_calls_fails_only_its_caller(serve_cluster, serving_store):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    trips = requests_from(serving_store.vocabulary(), 60, seed=9)
    bad = {7, 31, 58}
    for i in bad:
        trips[i] = {**trips[i], "cities": [2**60]}  # beyond JSON's safe integers: 422

    async def calls() -> list:
        async with AsyncClient(base_url(serve_cluster), ClientOptions(linger_s=0.01)) as client:
            return await asyncio.gather(*(client.destinations.recommend(t) for t in trips), return_exceptions=True)

    answers = asyncio.run(calls())
    assert {i for i, a in enumerate(answers) if isinstance(a, InvalidRequest)} == bad
    assert all(a.status == 422 and "cities" in str(a) for a in answers if isinstance(a, InvalidRequest))
    good = [i for i in range(len(trips)) if i not in bad]
    same_answers([answers[i] for i in good], [recommend(serve_cluster, trips[i]).json() for i in good])


def test_shed_requests_are_retried_until_answered(serve_cluster, serving_store):
    """A replica with a 15 ms queueing budget sheds part of 32 concurrent requests with 503 + Retry-After; the
    client retries each until it is answered, within its deadline."""
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    trips = requests_from(serving_store.vocabulary(), 400, seed=10)
    # Asked before the budget shrinks: a lone request that no client retries could be shed too.
    expected = [recommend(serve_cluster, trip).json()["cities"] for trip in trips[:20]]
    # The replica's own shedding is the subject (HAProxy's limits are the session's): no in-flight target.
    serve_deploy(serve_cluster, serve_config(serve_cluster, serving_store.uri, serving_store.good,
                                             args={"queue_budget_ms": 15, "inflight_target_ms": 0}))
    wait_for(lambda: (s := httpx.get(f"{serve_cluster.url}/model", timeout=10)).status_code == 200
             and s.json()["queue_budget_ms"] == 15, what="the replica with a 15 ms budget")
    counting = Counting()
    # One row per request and 32 at once: the replica's queue, not the model, is what fills.
    options = ClientOptions(max_rows=1, max_in_flight=32, retry=RetryPolicy(deadline_s=300, backoff_s=0.02))

    async def calls() -> list[Destinations]:
        async with AsyncClient(base_url(serve_cluster), options, http=counting.http) as client:
            return await asyncio.gather(*(client.destinations.recommend(trip) for trip in trips))

    try:
        answers = asyncio.run(calls())
        assert counting.shed > 0, "the replica shed nothing: the test did not exercise retries"
        assert len(counting.sent) >= len(trips) + counting.shed
        assert [a.cities for a in answers[:20]] == expected
    finally:  # the usual budget again, for the tests after this one
        serve_deploy(serve_cluster, serve_config(serve_cluster, serving_store.uri, serving_store.good))
        wait_for(lambda: (s := httpx.get(f"{serve_cluster.url}/model", timeout=10)).status_code == 200
                 and s.json()["queue_budget_ms"] != 15, what="the replica with the usual budget")


def test_the_sync_client_coalesces_calls_from_threads(serve_cluster, serving_store):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    trips = requests_from(serving_store.vocabulary(), 64, seed=11)
    from concurrent.futures import ThreadPoolExecutor
    with Client(base_url(serve_cluster), ClientOptions(linger_s=0.01)) as client, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(client.destinations.recommend, trips))
        many = client.destinations.recommend_many(trips)
    same_answers(answers, [vars(a) for a in many])
    same_answers(answers, [recommend(serve_cluster, t).json() for t in trips])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_the_cli_scores_a_file_through_the_api(serve_cluster, serving_store, tmp_path, suffix):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    trips = requests_from(serving_store.vocabulary(), 2500, seed=12)
    source = tmp_path / f"trips{suffix}"
    table = pa.Table.from_pylist(trips)
    if suffix == ".csv":
        csv.write_csv(table.set_column(0, "cities", pa.array([" ".join(map(str, t["cities"])) for t in trips])),
                      source)
    else:
        pq.write_table(table, source)
    output = tmp_path / "answers.parquet"
    result = subprocess.run([sys.executable, "-m", "recsys_client", "score", "--url", base_url(serve_cluster),
                             "--model", "destinations", "--input", str(source), "--output", str(output),
                             "--rows-per-request", "512"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "scored 2,500 rows" in result.stderr
    scored = pq.read_table(output)
    assert scored.num_rows == 2500 and scored["cities"].to_pylist() == [t["cities"] for t in trips]
    expected = httpx.post(f"{serve_cluster.url}/recommend/batch", json={"requests": trips[:1000]}, timeout=60)
    assert scored["answer_cities"].to_pylist()[:1000] == [r["cities"] for r in expected.json()["results"]]
    assert set(scored["answer_model_version"].to_pylist()) == {serving_store.good}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_cli_names_a_bad_file_and_writes_nothing(serve_cluster, serving_store, tmp_path):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    source = tmp_path / "trips.parquet"
    pq.write_table(pa.table({"cities": [[1], [2]], "booker_country": ["x", "y"]}), source)
    output = tmp_path / "answers.parquet"
    result = subprocess.run([sys.executable, "-m", "recsys_client", "score", "--url", base_url(serve_cluster),
                             "--model", "destinations", "--input", str(source), "--output", str(output)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "device_class" in result.stderr, result.stderr
    assert not output.exists() and [p.name for p in tmp_path.iterdir()] == ["trips.parquet"]
