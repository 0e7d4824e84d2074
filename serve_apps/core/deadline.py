"""The queueing budget, enforced in the replica: a request may wait at most ``queue_budget_ms`` in all before the
model takes it up, or it is answered 503 with ``Retry-After``.

HAProxy stamps each request with its arrival time (``X-Request-Start: t=<ms since epoch>``, replacing any value a
client sent; :mod:`serve_apps.haproxy_wrapper`). HAProxy's own queue is bounded in time and length, but a request
can also wait after it: behind other requests in a replica whose cores are taken (by neighbours, or under a flood
of requests), or in the replica's own queue when several HAProxy instances send to it at once. Refusing such a
request costs far less than serving it, and its caller is better served by another try than by a late answer.

Waiting counts, work does not: the time in HAProxy's queue and in the replica before the request is read, then the
time its rows wait in the inference lane. Reading and validating the body is work (and grows with the body), so the
budget is checked twice: on arrival in the replica, before the body is read (:class:`EnforceQueueBudget`), and,
with what is left of it, when the rows would join a model call (the lane drops entries past their :func:`deadline`).
Without the stamp (Serve's own proxy) there is no deadline. Only POSTs have a budget: reads (``GET /model``, the
OpenAPI document) do no model work, cost next to nothing however late they are taken up, and document no 503; an
operator asking a busy replica what it serves should get the answer.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from serve_apps.core.errors import Overloaded, error_response

REQUEST_START = b"x-request-start"
# What is left of the current request's budget once the replica took it up, for the code that runs in its task.
_LEFT_S: contextvars.ContextVar[float | None] = contextvars.ContextVar("queue_budget_left_s", default=None)


@dataclass(frozen=True)
class QueueBudget:
    """Set by the replica when it starts (``app.state.queue_budget``)."""

    seconds: float


class EnforceQueueBudget:
    """ASGI middleware: 503 for a POST that waited longer than ``app.state.queue_budget`` since HAProxy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        budget: QueueBudget | None = getattr(scope["app"].state, "queue_budget", None)
        if scope["type"] == "http" and scope["method"] == "POST" and budget is not None:
            arrived = arrival(next((value for name, value in scope["headers"] if name == REQUEST_START), None))
            if arrived is not None:
                waited_s = time.time() - arrived
                if waited_s > budget.seconds:
                    await error_response(expired(waited_s, budget.seconds), scope["app"])(scope, receive, send)
                    return
                _LEFT_S.set(budget.seconds - waited_s)
        await self.app(scope, receive, send)


def deadline() -> float | None:
    """The latest moment (seconds since the epoch) the model may take up the request whose task this is: now plus
    what was left of its budget when the replica took it up. None without a stamp, or outside a request."""
    left = _LEFT_S.get()
    return None if left is None else time.time() + left


def expired(waited_s: float, budget_s: float) -> Overloaded:
    return Overloaded(f"queued {waited_s * 1000:.0f} ms, over the budget of {budget_s * 1000:.0f} ms; retry")


def arrival(stamp: bytes | None) -> float | None:
    """Seconds since the epoch of a ``t=<milliseconds since epoch>`` stamp, or None without one (or a foreign one)."""
    if not stamp or not stamp.startswith(b"t="):
        return None
    try:
        return int(stamp[2:]) / 1000
    except ValueError:
        return None
