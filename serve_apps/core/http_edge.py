"""The HTTP edge every application shares, model or composition: one FastAPI app factory, so that each answers
the queueing budget, body limits, media types and errors alike, and counts its requests alike."""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_apps.core import errors
from serve_apps.core.deadline import EnforceQueueBudget
from serve_apps.core.demand import DemandMeter, MeasureDemand
from serve_apps.core.media_types import require_media_type


def ingress_api(title: str, description: str, max_body_bytes: int) -> FastAPI:
    """The FastAPI app of an ingress deployment: the queueing budget (503, before anything else), a body size limit
    (413), 415 for bodies it does not read, the error handlers, the demand it reports to the autoscaler
    (``app.state.demand``) and request metrics around all of it (the deployment sets ``app.state.metrics``, a
    :class:`serve_apps.core.metrics.ReplicaMetrics`)."""
    api = FastAPI(title=title, version="1", description=description, max_body_size=max_body_bytes,
                  dependencies=[Depends(require_media_type)])
    errors.install(api)
    api.state.demand = DemandMeter()
    api.add_middleware(EnforceQueueBudget)
    api.add_middleware(MeasureDemand)  # outside the budget: a request it refuses was in the system too
    api.add_middleware(RecordRequests)  # added last: outermost, so it sees the budget's 503s too
    return api


class RecordRequests:
    """ASGI middleware: each HTTP request's status and duration in the app's metrics, labelled with its path under
    the app's route prefix if the app documents that path (``/recommend/batch``), else ``other`` (random paths
    must not add series)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._paths: frozenset[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = getattr(scope["app"].state, "metrics", None)
        if scope["type"] != "http" or metrics is None or not metrics.enabled:
            await self.app(scope, receive, send)
            return
        metrics.start_reporting()  # an app without a model to load starts it here, with its first request
        started, code = time.perf_counter(), 500

        async def send_recorded(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recorded)
        finally:
            metrics.request(self._route(scope), code, time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        if self._paths is None:  # the app's routes as its OpenAPI document lists them (none has path parameters)
            self._paths = frozenset(scope["app"].openapi()["paths"])
        path = get_route_path(scope)
        return path if path in self._paths else "other"
