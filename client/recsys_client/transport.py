"""One HTTP call to the service, retried as the service asks: 503 (and 502/504 from a proxy) after its
``Retry-After``, connection failures and timeouts with exponential back-off and jitter, all within the call's
deadline. Other 4xx/5xx answers are not retried: they would fail again."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import httpx

RETRIED_STATUSES = frozenset({502, 503, 504})
RETRIED_ERRORS = (httpx.TransportError,)  # connection refused or reset, timeouts, protocol errors


@dataclass(frozen=True)
class RetryPolicy:
    deadline_s: float = 30.0  # for a call, every attempt and wait included
    attempt_timeout_s: float = 10.0
    backoff_s: float = 0.05  # the first wait; doubled per attempt, with jitter
    max_backoff_s: float = 2.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)


class ServiceError(Exception):
    """The service answered an error that retrying will not cure (or the call ran out of time)."""

    def __init__(self, message: str, status: int | None = None, detail: object = None) -> None:
        super().__init__(message)
        self.status, self.detail = status, detail

    @classmethod
    def of(cls, response: httpx.Response) -> ServiceError:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:500]
        kind = InvalidRequest if 400 <= response.status_code < 500 else cls
        return kind(f"{response.request.method} {response.request.url.path}: {response.status_code} {detail}",
                    response.status_code, detail)


class InvalidRequest(ServiceError):
    """4xx: the request itself is at fault (``detail`` names the field, and the row for batch bodies)."""


class DeadlineExceeded(ServiceError):
    """No success before the call's deadline; the message says what the last attempt got."""


class Transport:
    def __init__(self, http: httpx.AsyncClient, policy: RetryPolicy) -> None:
        self.http, self.policy = http, policy

    async def request(self, method: str, url: str, deadline: float | None = None, **kwargs) -> httpx.Response:
        """The first 2xx answer; :class:`ServiceError` for an answer not worth retrying; :class:`DeadlineExceeded`
        when ``deadline`` (``time.monotonic()``; default: the policy's from now) passes first."""
        deadline = deadline if deadline is not None else time.monotonic() + self.policy.deadline_s
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"{method} {url}: no attempt left before the deadline")
            try:
                response = await self.http.request(method, url, timeout=min(left, self.policy.attempt_timeout_s),
                                                   **kwargs)
            except RETRIED_ERRORS as err:
                last, wait = f"{type(err).__name__}: {err}", self.policy.backoff(attempt)
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRIED_STATUSES:
                    raise ServiceError.of(response)
                last = f"{response.status_code}"
                wait = max(_retry_after(response), self.policy.backoff(attempt))
            attempt += 1
            if time.monotonic() + wait >= deadline:
                raise DeadlineExceeded(f"{method} {url}: gave up after {attempt} attempt(s) within the deadline; "
                                       f"last: {last}")
            await asyncio.sleep(wait)


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", 0)))
    except ValueError:  # an HTTP date: not sent by this service
        return 0.0
