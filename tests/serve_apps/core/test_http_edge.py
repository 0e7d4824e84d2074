"""The HTTP edge every model app shares (``ingress_api``): the queueing budget, media types, body size and the error
table, on a small FastAPI app in process (Starlette's test client), so each status is checked exactly."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from serve_apps.core.deadline import QueueBudget, deadline
from serve_apps.core.errors import InvalidRows, ModelCallFailed, ModelNotReady, documented_responses
from serve_apps.core.http_edge import ingress_api


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(strict=True, ge=0)


def app(budget_s: float | None = 0.1, max_body_bytes: int = 4096):
    api = ingress_api("test", "test", max_body_bytes=max_body_bytes)
    if budget_s is not None:
        api.state.queue_budget = QueueBudget(budget_s)
    failures = {"not-ready": ModelNotReady("no model loaded"), "rows": InvalidRows("rows the model cannot take"),
                "model": ModelCallFailed("the model failed: RuntimeError")}

    @api.post("/echo", responses=documented_responses(400, 413, 415, 500, 503))
    async def echo(body: Echo) -> dict:
        if body.n in (1, 2, 3):
            raise list(failures.values())[body.n - 1]
        return {"n": body.n, "deadline": deadline()}

    return TestClient(api)


def stamp(ago_s: float) -> dict:
    return {"X-Request-Start": f"t={int((time.time() - ago_s) * 1000)}"}


def test_a_request_within_its_budget_is_served_with_what_is_left_of_it():
    # Seconds, not the usual 100 ms: a pause of this process (a garbage collection of the session's heap takes
    # ~0.3 s) must not spend the budget; the arithmetic is the same.
    response = app(budget_s=60).post("/echo", json={"n": 7}, headers=stamp(30))
    assert response.status_code == 200
    left = response.json()["deadline"] - time.time()
    assert 0 < left <= 30  # 60 s budget, 30+ s of it waited before the replica took the request up


def test_a_request_past_its_budget_gets_503_with_retry_after_before_its_body_is_read():
    response = app().post("/echo", content=b"not even json", headers={**stamp(0.5), "content-type": "text/plain"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"].startswith("queued 5") and "over the budget of 100 ms" in response.json()["detail"]


def test_a_read_has_no_budget_however_long_it_waited():
    client = app()
    assert client.get("/openapi.json", headers=stamp(0.5)).status_code == 200
    assert client.post("/echo", json={"n": 7}, headers=stamp(0.5)).status_code == 503


@pytest.mark.parametrize("headers", [{}, {"X-Request-Start": "1700000000"}, {"X-Request-Start": "t=soon"}],
                         ids=["no-stamp", "foreign-format", "not-a-number"])
def test_without_a_stamp_of_ours_there_is_no_deadline(headers):
    response = app().post("/echo", json={"n": 7}, headers=headers)
    assert response.status_code == 200 and response.json()["deadline"] is None


@pytest.mark.parametrize(("content_type", "status"), [
    ("application/json", 200),
    ("application/json; charset=utf-8", 200),
    ("Application/JSON", 200),
    ("application/octet-stream", 415),
    ("text/plain", 415),
    (None, 415),
], ids=["json", "json-charset", "json-case", "octet-stream", "text", "none"])
def test_bodies_under_a_type_the_endpoint_does_not_read_get_415(content_type, status):
    headers = {"content-type": content_type} if content_type else {}
    response = app().post("/echo", content=b'{"n": 7}', headers=headers)
    assert response.status_code == status
    if status == 415:
        assert response.json() == {"detail": f"Content-Type {content_type.lower() if content_type else '(none)'!r} "
                                             "is not accepted here; send application/json"}


@pytest.mark.parametrize(("body", "status", "loc"), [
    (b'{"n": 1', 400, ["body", 7]),
    (b'{"n": "\xc3\x28"}', 400, ["body"]),
    (b"\xff\xfe\x00garbage", 400, ["body", 0]),
    (b'{"n": true}', 422, ["body", "n"]),
    (b'{"n": -1}', 422, ["body", "n"]),
    (b'{"n": 7, "m": 1}', 422, ["body", "m"]),
], ids=["truncated-json", "not-utf8", "binary", "bool-for-int", "out-of-range", "unknown-field"])
def test_malformed_bodies_get_400_and_invalid_ones_422_naming_the_field(body, status, loc):
    response = app().post("/echo", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    [problem] = response.json()["detail"]
    assert problem["loc"] == loc
    assert "input" not in problem  # never echoed back


def test_a_body_over_the_limit_gets_413():
    response = app(max_body_bytes=1024).post("/echo", content=b'{"n": ' + b" " * 2000 + b"1}",
                                             headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(("n", "status", "retry_after"), [(1, 503, "1"), (2, 422, None), (3, 500, None)],
                         ids=["not-ready", "invalid-rows", "model-failed"])
def test_serving_errors_map_to_their_status(n, status, retry_after):
    response = app().post("/echo", json={"n": n})
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after


def test_an_undeclared_method_is_405_whatever_its_body():
    client = app()
    assert client.put("/echo", content=b"\x00\x01", headers={"content-type": "application/octet-stream"}) \
        .status_code == 405
    assert client.get("/nothing-here").status_code == 404


def test_every_error_status_is_documented_with_its_body():
    paths = app().app.openapi()["paths"]["/echo"]["post"]["responses"]
    assert set(paths) == {"200", "400", "413", "415", "422", "500", "503"}
    assert "Retry-After" in paths["503"]["headers"]


class RecordingMetrics:
    """Stands in for ReplicaMetrics (whose Ray metrics need a Serve replica; tests/serve_apps/test_monitoring.py
    checks those through a real Prometheus): records what the edge reports."""

    enabled = True

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []
        self.refusals: list[tuple[int, str]] = []
        self.reporting = False

    def start_reporting(self) -> None:
        self.reporting = True

    def request(self, route: str, code: int, seconds: float) -> None:
        assert 0 <= seconds < 10
        self.requests.append((route, code))

    def refused(self, code: int, reason: str) -> None:
        self.refusals.append((code, reason))


def test_every_answer_is_counted_by_route_and_every_refusal_by_reason():
    client = app()
    metrics = client.app.state.metrics = RecordingMetrics()
    client.post("/echo", json={"n": 7})
    client.post("/echo", json={"n": -1})
    client.post("/echo", content=b"{", headers={"content-type": "application/json"})
    client.post("/echo", content=b"x", headers={"content-type": "text/plain"})
    client.post("/echo", json={"n": 1})
    client.post("/echo", json={"n": 3})
    client.post("/echo", json={"n": 7}, headers=stamp(0.5))
    client.get("/echo")
    client.get("/random/path")
    assert metrics.requests == [("/echo", 200), ("/echo", 422), ("/echo", 400), ("/echo", 415), ("/echo", 503),
                                ("/echo", 500), ("/echo", 503), ("/echo", 405), ("other", 404)]
    assert metrics.refusals == [(422, "invalid_body"), (400, "malformed_body"), (415, "unsupported_media_type"),
                                (503, "model_not_ready"), (500, "model_call_failed"), (503, "overloaded"),
                                (405, "method_not_allowed"), (404, "not_found")]
    assert metrics.reporting
