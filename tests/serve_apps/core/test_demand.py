"""The demand a replica reports to the autoscaler (its requests' time in the system, times the load HAProxy refused
per request it sent on), and the policy that scales on it."""

from __future__ import annotations

import importlib
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ray.serve._private.common import DeploymentID
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from serve_apps.core import demand
from serve_apps.core.demand import DEMAND, DemandMeter, MeasureDemand, demand_policy
from serve_apps.core.settings import AUTOSCALING_POLICY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_meter_gives_requests_in_the_system_per_second_since_the_last_read(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(demand.time, "monotonic", clock)
    meter = DemandMeter()
    for _ in range(10):
        meter.add(0.2, offered_ratio=1.0)  # 10 requests of 200 ms in 2 s: one in the system on average
    meter.add(0.1, offered_ratio=10.0)  # one of 100 ms standing for nine refused beside it
    clock.now += 2
    assert meter.read() == pytest.approx((10 * 0.2 + 0.1 * 10) / 2)
    clock.now += 1
    assert meter.read() == 0.0


def measured_app() -> tuple[FastAPI, DemandMeter]:
    api = FastAPI()
    api.state.demand = meter = DemandMeter()
    api.add_middleware(MeasureDemand)

    @api.post("/work")
    async def work() -> dict:
        return {}

    @api.get("/status")
    async def status() -> dict:
        return {}

    return api, meter


@pytest.mark.parametrize(("offered", "ratio"), [("3.500", 3.5), (None, 1.0), ("0.2", 1.0), ("junk", 1.0),
                                                ("nan", 1.0), ("inf", 1.0)],
                         ids=["haproxy", "none", "below-one", "junk", "nan", "inf"])
def test_a_post_through_haproxy_adds_its_time_since_arrival_times_the_offered_ratio(monkeypatch, offered, ratio):
    api, meter = measured_app()
    added: list[tuple[float, float]] = []
    monkeypatch.setattr(meter, "add", lambda seconds, offered_ratio: added.append((seconds, offered_ratio)))
    headers = {"x-request-start": f"t={int((time.time() - 0.05) * 1000)}"}
    if offered is not None:
        headers["x-recsys-offered"] = offered
    assert TestClient(api).post("/work", headers=headers).status_code == 200
    [(seconds, got)] = added
    assert seconds >= 0.05 and got == ratio


@pytest.mark.parametrize(("method", "headers"), [("get", {"x-request-start": "t=1"}), ("post", {})],
                         ids=["a-read", "no-stamp"])
def test_reads_and_requests_that_did_not_come_through_haproxy_add_nothing(monkeypatch, method, headers):
    api, meter = measured_app()
    added: list = []
    monkeypatch.setattr(meter, "add", lambda *args: added.append(args))
    client = TestClient(api)
    response = client.get("/status", headers=headers) if method == "get" else client.post("/work", headers=headers)
    assert response.status_code == 200 and added == []


def context(replicas: int, in_flight: float, demands: list[float] | None, target: float = 16) -> AutoscalingContext:
    deployment = DeploymentID(name="Destinations", app_name="destinations")
    return AutoscalingContext(
        deployment_id=deployment, deployment_name="Destinations", app_name="destinations",
        current_num_replicas=replicas, target_num_replicas=replicas, running_replicas=[],
        total_num_requests=in_flight, total_queued_requests=0,
        aggregated_metrics=None if demands is None else {DEMAND: {f"replica-{i}": d for i, d in enumerate(demands)}},
        raw_metrics=None, capacity_adjusted_min_replicas=1, capacity_adjusted_max_replicas=8, policy_state={},
        last_scale_up_time=None, last_scale_down_time=None, current_time=time.time(),
        config=AutoscalingConfig(target_ongoing_requests=target, min_replicas=1, max_replicas=8))


@pytest.mark.parametrize(("ctx", "replicas"), [
    (context(1, in_flight=4, demands=[160]), 10),       # a flood: 4 in flight, ten times that refused
    (context(2, in_flight=8, demands=[10, 14]), 1.5),   # below the target: Serve scales down after its delay
    (context(2, in_flight=40, demands=[2, 2]), 2.5),    # handle calls in flight, no HTTP: Serve's own count
    (context(1, in_flight=20, demands=None), 1.25),     # no replica reported demand yet
    (context(0, in_flight=0, demands=None), 0),         # none running: the target stands
], ids=["flood", "quiet", "handle-calls", "no-demand-yet", "no-replicas"])
def test_the_policy_asks_for_the_larger_of_requests_in_flight_and_demand_per_target(ctx, replicas):
    desired, state = demand_policy(ctx)
    assert desired == pytest.approx(replicas) and state == {}


def test_the_configs_policy_path_names_the_policy():
    module, _, name = AUTOSCALING_POLICY.partition(":")
    assert getattr(importlib.import_module(module), name) is demand_policy
