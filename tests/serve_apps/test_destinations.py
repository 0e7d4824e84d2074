"""The destinations app on a real Serve (HAProxy ingress), deployed from the real config, called over HTTP."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

from recsys.artifact_store import ModelStore
from recsys.manifest import SAVED_MODEL_DIR
from recsys.destinations.runtime import Predictor, pad_trips
from tests.serving import (
    NAME,
    deploy_version,
    model_status,
    post,
    recommend,
    requests_from,
    serve_config,
    serve_deploy,
    serve_shutdown,
    wait_for,
)


pytestmark = pytest.mark.usefixtures("serve_cluster")
ARROW = "application/vnd.apache.arrow.stream"


def test_answers_equal_the_saved_models_own_top_k(serve_cluster, serving_store, tmp_path):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    requests = requests_from(serving_store.vocabulary(), 40)
    answers = [recommend(serve_cluster, body) for body in requests]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]

    local = ModelStore(serving_store.uri).fetch(NAME, serving_store.good, tmp_path)
    predictor = Predictor(local.path / SAVED_MODEL_DIR)
    for body, answer in zip(requests, answers):
        cities, scores = predictor.predict(pad_trips([body["cities"]]), [body["booker_country"]],
                                           [body["device_class"]], np.array([body["affiliate_id"] or 0]), body["k"])
        assert answer.json()["cities"] == cities[0].tolist()
        np.testing.assert_allclose(answer.json()["scores"], scores[0], rtol=1e-5)
        assert answer.json()["model_version"] == serving_store.good


def test_the_batch_endpoint_answers_in_order_across_batches(serve_cluster, serving_store):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good, max_batch_size=64)
    requests = requests_from(serving_store.vocabulary(), 150, seed=1)  # > max_batch_size: several batches
    batch = post(f"{serve_cluster.url}/recommend/batch", json={"requests": requests}, timeout=60)
    assert batch.status_code == 200
    singles = [recommend(serve_cluster, body).json() for body in requests[:20]]
    results = batch.json()["results"]
    assert len(results) == 150
    assert [r["cities"] for r in results[:20]] == [s["cities"] for s in singles]
    assert [len(r["cities"]) for r in results] == [body["k"] for body in requests]


def arrow_stream(table: pa.Table, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_arrow_bodies_get_the_json_answers(serve_cluster, serving_store):
    """The same rows as an Arrow stream (narrower integer types, a dictionary-encoded column, large strings, across
    two model calls) get the answers JSON gets, as Arrow or as JSON, whichever the caller accepts."""
    deploy_version(serve_cluster, serving_store.uri, serving_store.good, max_batch_size=64)
    requests = requests_from(serving_store.vocabulary(), 100, seed=5)
    expected = post(f"{serve_cluster.url}/recommend/batch", json={"requests": requests}, timeout=60)
    assert expected.status_code == 200 and expected.headers["x-model-version"] == serving_store.good
    table = pa.Table.from_pylist(requests)
    table = table.set_column(0, "cities", table["cities"].cast(pa.large_list(pa.int32())))
    table = table.set_column(1, "booker_country", table["booker_country"].dictionary_encode())
    table = table.set_column(2, "device_class", table["device_class"].cast(pa.large_string()))
    table = table.set_column(4, "k", table["k"].cast(pa.uint8()))
    body = arrow_stream(table)

    arrow = post(f"{serve_cluster.url}/recommend/batch", content=body, timeout=60,
                 headers={"content-type": ARROW, "accept": ARROW})
    assert arrow.status_code == 200, arrow.text
    assert arrow.headers["content-type"] == ARROW and arrow.headers["x-model-version"] == serving_store.good
    answers = pa.ipc.open_stream(arrow.content).read_all()
    assert answers.schema.metadata[b"model_version"] == serving_store.good.encode()
    assert answers.schema.field("cities").type == pa.list_(pa.int64())
    assert answers.schema.field("scores").type == pa.list_(pa.float32())
    assert answers.to_pylist() == expected.json()["results"]

    as_json = post(f"{serve_cluster.url}/recommend/batch", content=body, timeout=60,
                   headers={"content-type": ARROW})
    assert as_json.status_code == 200 and as_json.json() == expected.json()

    compressed = post(f"{serve_cluster.url}/recommend/batch", content=arrow_stream(table, "zstd"),
                      timeout=60, headers={"content-type": ARROW})
    assert compressed.status_code == 200 and compressed.json() == expected.json()


def test_a_compressed_arrow_body_may_not_inflate_beyond_the_body_limit(serve_cluster, serving_store):
    """80 MB of zeros compress to a few KB: refused with 413 before anything is decompressed."""
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    zeros = pa.array([np.zeros(10_000_000, dtype=np.int64), [1]], pa.list_(pa.int64()))
    bomb = arrow_stream(pa.table({**BATCH_COLUMNS, "cities": zeros}), "zstd")
    assert len(bomb) < 100_000
    response = post(f"{serve_cluster.url}/recommend/batch", content=bomb, timeout=60,
                    headers={"content-type": ARROW})
    assert response.status_code == 413, response.text
    assert re.search(r"decode to 800000\d\d bytes; at most 8388608", response.json()["detail"])
    assert recommend(serve_cluster, requests_from(serving_store.vocabulary(), 1)[0]).status_code == 200


BATCH_COLUMNS = {"cities": [[1, 2], [3]], "booker_country": ["Elbonia", "Elbonia"],
                 "device_class": ["mobile", "desktop"]}


def _with(**columns) -> bytes:
    return arrow_stream(pa.table({**BATCH_COLUMNS, **columns}))


def _not_utf8() -> pa.Array:
    return pa.array([b"ok", b"\xff\xfe"], pa.binary()).view(pa.string())


@pytest.mark.parametrize(("make_body", "status", "loc"), [
    (lambda: _with(cities=pa.array([[1.0], [2.0]])), 422, ["body", "cities"]),
    (lambda: _with(cities=pa.array([[True], [False]])), 422, ["body", "cities"]),
    (lambda: _with(cities=pa.array([[1], []], pa.list_(pa.int64()))), 422, ["body", "cities", 1]),
    (lambda: _with(cities=pa.array([[1], [2**60]])), 422, ["body", "cities", 1]),
    (lambda: _with(cities=pa.array([[1], [-3]])), 422, ["body", "cities", 1]),
    (lambda: _with(cities=pa.array([[1], list(range(1, 202))])), 422, ["body", "cities", 1]),
    (lambda: _with(booker_country=pa.array(["Elbonia", None])), 422, ["body", "booker_country", 1]),
    (lambda: _with(booker_country=pa.array(["Elbonia", "x" * 101])), 422, ["body", "booker_country", 1]),
    (lambda: _with(device_class=_not_utf8()), 422, ["body", "device_class", 1]),
    (lambda: _with(k=pa.array([4, 101])), 422, ["body", "k", 1]),
    (lambda: _with(cities=pa.array([[1], [2, None]])), 422, ["body", "cities", 1]),
    (lambda: _with(affiliate_id=pa.array([-1, None])), 422, ["body", "affiliate_id", 0]),
    (lambda: _with(colour=pa.array(["red", "blue"])), 422, ["body", "colour"]),
    (lambda: arrow_stream(pa.table({"cities": BATCH_COLUMNS["cities"]})), 422, ["body", "booker_country"]),
    (lambda: arrow_stream(pa.table({name: values * 513 for name, values in BATCH_COLUMNS.items()})), 422, ["body"]),
    (lambda: arrow_stream(pa.table({name: values[:0] for name, values in BATCH_COLUMNS.items()})), 422, ["body"]),
    (lambda: _with()[:-40], 400, ["body"]),
    (lambda: b'{"requests": []}', 400, ["body"]),
    (lambda: bytes(range(256)), 400, ["body"]),
    (lambda: b"", 400, ["body"]),
], ids=["double-ids", "bool-ids", "empty-trip", "id-beyond-json", "negative-id", "trip-too-long", "null-country",
        "country-too-long", "not-utf8", "k-too-big", "null-city", "negative-affiliate", "unknown-column",
        "missing-column", "too-many-rows", "no-rows", "truncated-stream", "json-as-arrow", "binary", "empty"])
def test_malformed_arrow_bodies_get_4xx_naming_the_column_and_row(serve_cluster, serving_store, make_body, status,
                                                                 loc):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    response = post(f"{serve_cluster.url}/recommend/batch", content=make_body(), timeout=30,
                    headers={"content-type": ARROW, "accept": ARROW})
    assert response.status_code == status, response.text
    assert response.json()["detail"][0]["loc"] == loc


def test_no_request_is_answered_before_warm_up_finished(serve_cluster, serving_store):
    serve_shutdown(serve_cluster)
    answered: list[float] = []
    refused: list[int] = []
    stop = threading.Event()
    body = requests_from(serving_store.vocabulary(), 1)[0]

    def probe() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                try:
                    response = recommend(serve_cluster, body, client, attempts=1)
                except httpx.TransportError:
                    refused.append(0)
                else:
                    (answered if response.status_code == 200 else refused).append(
                        time.time() if response.status_code == 200 else response.status_code)
                time.sleep(0.01)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        status = deploy_version(serve_cluster, serving_store.uri, serving_store.good)
        wait_for(lambda: len(answered) > 5, what="answers after start-up")
    finally:
        stop.set()
        thread.join()
    warmed_up_at = dt.datetime.fromisoformat(status["loaded_at"]).timestamp()
    assert refused, "the probe started before the replica was ready"
    assert min(answered) >= warmed_up_at
    assert status["load_seconds"] > 0


def test_a_hot_swap_under_load_fails_nothing_and_later_answers_carry_the_new_version(serve_cluster, serving_store):
    # A budget no request reaches here: loading the new version takes CPU from serving on this 2-core machine, and
    # what that sheds is test_replica's subject; this test's is that the swap itself fails nothing.
    generous = {"queue_budget_ms": 30_000}
    serve_deploy(serve_cluster, serve_config(serve_cluster, serving_store.uri, serving_store.good, args=generous))
    wait_for(lambda: (status := model_status(serve_cluster)) and status["version"] == serving_store.good
             and status["queue_budget_ms"] == 30_000, what="the good version with a generous budget")
    requests = requests_from(serving_store.vocabulary(), 64, seed=2)
    versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client() as client:
            i = worker
            while not stop.is_set():
                try:
                    response = recommend(serve_cluster, requests[i % len(requests)], client, attempts=1)
                    if response.status_code == 200:
                        versions.append(response.json()["model_version"])
                    else:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as err:
                    failures.append(repr(err))
                i += 4

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(versions) > 50, what="load before the swap")
        serve_deploy(serve_cluster, serve_config(serve_cluster, serving_store.uri, serving_store.other,
                                                 args=generous))
        wait_for(lambda: serving_store.other in versions[-20:], what="answers from the new version")
        after_swap = len(versions)
        wait_for(lambda: len(versions) > after_swap + 100, what="load after the swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        # The usual budget again, on a replica the next tests can count on (deploy_version alone would return while
        # this one, already on their version, is being replaced).
        serve_deploy(serve_cluster, serve_config(serve_cluster, serving_store.uri, serving_store.other))
        wait_for(lambda: (status := model_status(serve_cluster)) and status["queue_budget_ms"] != 30_000,
                 what="the replica with the usual budget")
    assert failures == []
    assert set(versions) == {serving_store.good, serving_store.other}
    assert set(versions[after_swap:]) == {serving_store.other}
    assert model_status(serve_cluster)["version"] == serving_store.other


@pytest.mark.parametrize(("version", "error"), [
    ("corrupt", "sha256"),
    ("missing", "not found"),
    ("wrong_signature", "has inputs ['cities'], expected"),
], ids=["corrupt", "missing", "wrong-signature"])
def test_a_version_that_fails_to_load_is_refused_and_the_old_one_keeps_serving(serve_cluster, serving_store,
                                                                             version, error):
    deploy_version(serve_cluster, serving_store.uri, serving_store.other)
    bad = getattr(serving_store, version, "v9-does-not-exist")
    serve_deploy(serve_cluster, serve_config(serve_cluster, serving_store.uri, bad))
    status = wait_for(lambda: (s := model_status(serve_cluster)) and s["last_load_error"]
                      and s["last_load_error"]["version"] == bad and s, what="the load error")
    assert error in status["last_load_error"]["error"]
    assert status["version"] == serving_store.other
    answer = recommend(serve_cluster, requests_from(serving_store.vocabulary(), 1)[0])
    assert answer.status_code == 200
    assert answer.json()["model_version"] == serving_store.other


def test_batching_settings_change_at_run_time(serve_cluster, serving_store):
    status = deploy_version(serve_cluster, serving_store.uri, serving_store.good, max_batch_size=16,
                            batch_wait_timeout_s=0.001)
    assert (status["max_batch_size"], status["batch_wait_timeout_s"]) == (16, 0.001)
    status = deploy_version(serve_cluster, serving_store.uri, serving_store.good, max_batch_size=96)
    assert status["max_batch_size"] == 96
    requests = requests_from(serving_store.vocabulary(), 200, seed=3)
    batch = post(f"{serve_cluster.url}/recommend/batch", json={"requests": requests}, timeout=60)
    assert batch.status_code == 200 and len(batch.json()["results"]) == 200


GOOD = {"cities": [1, 2, 3], "booker_country": "Elbonia", "device_class": "mobile"}
TOO_BIG = 99999999999999999999  # beyond int64, let alone JSON's safe integers


@pytest.mark.parametrize(("body", "status", "field"), [
    ('{"cities": [1, 2', 400, "body"),
    ({**GOOD, "cities": []}, 422, "cities"),
    ({**GOOD, "cities": ["Paris"]}, 422, "cities"),
    ({**GOOD, "cities": [True]}, 422, "cities"),
    ({**GOOD, "cities": [1.5]}, 422, "cities"),
    ({**GOOD, "cities": [TOO_BIG]}, 422, "cities"),
    ({**GOOD, "affiliate_id": TOO_BIG}, 422, "affiliate_id"),
    ({**GOOD, "affiliate_id": False}, 422, "affiliate_id"),
    ({**GOOD, "affiliate_id": -1}, 422, "affiliate_id"),
    ('{"cities": [1], "booker_country": "\\ud800", "device_class": "mobile"}', 422, "booker_country"),
    ({**GOOD, "k": 0}, 422, "k"),
    ({**GOOD, "k": 101}, 422, "k"),
    ({**GOOD, "k": "4"}, 422, "k"),
    ({"cities": [1]}, 422, "booker_country"),
    ({**GOOD, "colour": "red"}, 422, "colour"),
    ({"requests": [GOOD] * 1025}, 422, "requests"),
    ({"requests": []}, 422, "requests"),
    ({"requests": [GOOD, {**GOOD, "cities": [TOO_BIG]}]}, 422, "cities"),
], ids=["malformed-json", "empty-cities", "wrong-type", "bool-for-int", "fraction", "id-beyond-int64",
        "affiliate-beyond-int64", "bool-affiliate", "negative-affiliate", "lone-surrogate", "k-zero", "k-too-big",
        "k-as-text", "missing-field", "unknown-field", "batch-too-big", "batch-empty", "one-bad-row-in-a-batch"])
def test_bad_input_gets_4xx_naming_the_field(serve_cluster, serving_store, body, status, field):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    path = "/recommend/batch" if isinstance(body, dict) and "requests" in body else "/recommend"
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) \
        else {"json": body}
    response = post(f"{serve_cluster.url}{path}", timeout=30, **kwargs)
    assert response.status_code == status
    assert any(field in (str(part) for part in error["loc"]) for error in response.json()["detail"])


@pytest.mark.parametrize(("content", "content_type", "status"), [
    (bytes(range(256)) * 4, "application/octet-stream", 415),
    (b'{"cities": [1], "booker_country": "x", "device_class": "y"}', "text/plain", 415),
    (bytes(range(256)) * 4, "application/json", 400),
    (b"x" * (9 << 20), "application/json", 413),
], ids=["binary-as-octet-stream", "json-as-text", "binary-as-json", "over-8-mib"])
def test_bodies_it_cannot_read_get_4xx_not_5xx(serve_cluster, serving_store, content, content_type, status):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    response = post(f"{serve_cluster.url}/recommend", content=content, timeout=30,
                    headers={"content-type": content_type})
    assert response.status_code == status


def test_unknown_cities_countries_and_devices_are_answered(serve_cluster, serving_store):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    response = recommend(serve_cluster, {"cities": [123456789], "booker_country": "Atlantis",
                                         "device_class": "smart-fridge", "affiliate_id": 987654, "k": 7})
    assert response.status_code == 200
    assert len(response.json()["cities"]) == 7


def test_the_model_endpoint_summarises_the_manifest(serve_cluster, serving_store):
    status = deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    assert status["model_uri"].endswith("/destinations")
    assert status["manifest"]["metrics"]["accuracy_at_4"] > 0
    assert status["manifest"]["vocabulary_sizes"]["cities"] > 100
    assert status["loading_version"] is None
    openapi = httpx.get(f"{serve_cluster.url}/openapi.json", timeout=10).json()
    assert {"/recommend", "/recommend/batch", "/model"} <= set(openapi["paths"])


def test_haproxy_listens_on_loopback_only(serve_cluster, serving_store):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    sockets = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    haproxy = [line.split()[3] for line in sockets if '"haproxy"' in line]
    assert haproxy, "HAProxy is running"
    assert all(address.startswith("127.0.0.1:") for address in haproxy), haproxy


def test_haproxy_sends_no_per_request_log_to_a_python_collector(serve_cluster, serving_store):
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    [path] = (serve_cluster.work_dir / "haproxy").glob("*/haproxy.cfg")  # Ray keeps it per node
    config = path.read_text()
    # The file HAProxy runs, as the wrapper rewrote it: the destination replica's connection limit.
    assert re.search(r"^\s*server SERVE_REPLICA_destinations\S* .* maxconn 32$", config, re.MULTILINE), config
    # Ray's per-request metrics are a log line of every request to a socket its HAProxyManager actor reads.
    assert "log-format-sd" not in config and "format rfc5424" not in config


def test_schemathesis_finds_no_failure_of_its_default_checks(serve_cluster, serving_store, tmp_path):
    """Schema-driven fuzzing of every endpoint against the served OpenAPI document: no 5xx, no schema-violating
    request accepted, no valid one refused, every status and header documented, every body as documented."""
    deploy_version(serve_cluster, serving_store.uri, serving_store.good)
    report = tmp_path / "junit.xml"
    result = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run",
                             f"{serve_cluster.url}/openapi.json", "--url", serve_cluster.url, "--seed", "7",
                             "--max-examples", "200", "--report", "junit", "--report-junit-path", str(report)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-8000:]
    assert "No issues found" in result.stdout
    assert 'failures="0"' in report.read_text() and 'errors="0"' in report.read_text()
