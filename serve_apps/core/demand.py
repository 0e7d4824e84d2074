"""The load an ingress replica reports to Serve's autoscaler, and the policy that scales on it.

Serve's default policy scales on the requests in flight in each replica. Behind HAProxy that number is capped: while
HAProxy turns requests away, a replica gets only as many at once as it finishes in ``inflight_target_ms``
(:mod:`serve_apps.haproxy_wrapper`'s controller), the rest wait in HAProxy's queue, and what the queue has no room
for is refused there; a flood ten times a replica's capacity would show the autoscaler a few requests in flight and
nothing more. So each replica reports its **demand**: the requests in the system on its account, queued or in flight
(Little's law: the time from HAProxy's arrival stamp to the answer, summed over its answered requests, per second),
times the ratio of requests HAProxy was offered to requests it sent on (``X-Recsys-Offered``), which counts the
refused load as if it had been served the same way. Without refusals that is the number Serve's
``target_ongoing_requests`` is about ("processed and waiting in the queue"); under a flood it grows with the flood.
:func:`demand_policy` (``settings.AUTOSCALING_POLICY``) asks for ``max(requests in flight, demand) /
target_ongoing_requests`` replicas; Serve applies the deployment's bounds, scaling factors and delays to it as to its
own policy's answer. Handle calls (the trips app calling a model) never pass HAProxy: Serve's own count of requests
in flight covers them.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_apps.core.deadline import REQUEST_START, arrival

if TYPE_CHECKING:
    from ray.serve.config import AutoscalingContext

DEMAND = "demand"  # the custom autoscaling metric's name
OFFERED = b"x-recsys-offered"


class DemandMeter:
    """Requests in the system, averaged over the time between two reads: the sum of finished requests' time in the
    system, each weighted by the offered ratio it arrived with, per second."""

    def __init__(self) -> None:
        self._request_seconds = 0.0
        self._since = time.monotonic()

    def add(self, seconds: float, offered_ratio: float) -> None:
        self._request_seconds += seconds * offered_ratio

    def read(self) -> float:
        now = time.monotonic()
        value = self._request_seconds / max(now - self._since, 1e-3)
        self._request_seconds, self._since = 0.0, now
        return value


class MeasureDemand:
    """ASGI middleware: each POST that came through HAProxy (it carries the arrival stamp) adds its time since
    arrival, until its answer is sent, to the app's :class:`DemandMeter` (``app.state.demand``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        meter: DemandMeter | None = getattr(scope["app"].state, "demand", None)
        if scope["type"] != "http" or scope["method"] != "POST" or meter is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        arrived = arrival(headers.get(REQUEST_START))
        if arrived is None:
            await self.app(scope, receive, send)
            return
        ratio = _ratio(headers.get(OFFERED))

        async def send_measured(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                meter.add(max(time.time() - arrived, 0.0), ratio)

        await self.app(scope, receive, send_measured)


def autoscaling_stats(meter: DemandMeter) -> dict[str, float]:
    """What a deployment's ``record_autoscaling_stats`` returns (Serve calls it every few seconds)."""
    return {DEMAND: meter.read()}


def demand_policy(ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
    """Serve autoscaling policy: replicas for the larger of the requests in flight and the replicas' demand, at
    ``target_ongoing_requests`` each."""
    if ctx.current_num_replicas == 0:
        return ctx.target_num_replicas, {}
    demand = sum((ctx.aggregated_metrics or {}).get(DEMAND, {}).values())
    return max(ctx.total_num_requests, demand) / ctx.config.get_target_ongoing_requests(), {}


def _ratio(value: bytes | None) -> float:
    """HAProxy's offered-to-sent ratio (at least 1); 1 without one (a request that came another way)."""
    try:
        ratio = float(value) if value else 1.0
    except ValueError:
        return 1.0
    return max(ratio, 1.0) if math.isfinite(ratio) else 1.0
