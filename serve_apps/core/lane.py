"""One model call at a time on a dedicated thread, each call taking everything that waits (up to a row limit).

Ray Serve's ``@serve.batch`` closes a batch when its wait expires or it is full, whether or not the model is free.
With a short wait under steady traffic that makes many small batches, which then queue behind the running one and
are run one by one: measured here, 1,000 requests/s offered gave batches of one or two and a p50 of 150 ms. The
lane merges the batches that queued while the model was busy into its next call, so batches grow with the backlog
while an idle model still answers a lone request at once ("natural batching").

Merging puts different callers' rows in one call, so one caller's bad row must not fail the others: when a call
fails, the lane splits its callers in halves and runs each half again, down to the single caller whose rows fail.
That caller alone gets the error; one bad caller among n costs about 2·log2(n) extra calls.

A caller may give a deadline (its queueing budget, :mod:`serve_apps.core.deadline`): rows still waiting when it has
passed never join a call, and the caller gets :class:`~serve_apps.core.errors.Overloaded` instead.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, NamedTuple, TypeVar

from serve_apps.core.errors import Overloaded

Rows = TypeVar("Rows", bound=Sized)
Result = TypeVar("Result")


class _Caller(NamedTuple):
    rows: Sized
    future: asyncio.Future
    deadline: float | None


class InferenceLane(Generic[Rows, Result]):
    """Runs ``function`` (blocking; the callers' rows in, one result per caller out, in order) on its own thread,
    one call at a time. What the rows are is the function's business (a list, a record batch); the lane only
    counts them."""

    def __init__(self, function: Callable[[list[Rows]], Sequence[Result]], max_rows: int) -> None:
        self.max_rows = max_rows
        self._function = function
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._waiting: collections.deque[_Caller] = collections.deque()
        self._draining = False

    @property
    def waiting_rows(self) -> int:
        """Rows queued behind the running call."""
        return sum(len(caller.rows) for caller in self._waiting)

    async def run(self, rows: Rows, deadline: float | None = None) -> Result:
        """The result for ``rows``, computed in a call that may include other callers' rows; if the call would
        start after ``deadline`` (seconds since the epoch), :class:`Overloaded` instead."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(_Caller(rows, future, deadline))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group = self._next_group()
                if group:
                    await self._call(group)
        finally:
            self._draining = False

    async def _call(self, group: list[_Caller]) -> None:
        """One model call for ``group``; on failure, the halves again, so the error reaches only its caller."""
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._thread, self._function, [caller.rows for caller in group])
        except Exception as error:
            if len(group) == 1:
                _settle(group[0].future, error=error)
                return
            middle = len(group) // 2
            await self._call(group[:middle])
            await self._call(group[middle:])
            return
        for caller, result in zip(group, results, strict=True):
            _settle(caller.future, result=result)

    def _next_group(self) -> list[_Caller]:
        """The oldest waiting callers whose rows fit in one call (always at least the oldest one); callers past
        their deadline are answered :class:`Overloaded` on the way."""
        group, size, now = [], 0, time.time()
        while self._waiting and (not group or size + len(self._waiting[0].rows) <= self.max_rows):
            caller = self._waiting.popleft()
            if caller.future.cancelled():
                continue
            if caller.deadline is not None and now > caller.deadline:
                _settle(caller.future, error=Overloaded(f"waited {(now - caller.deadline) * 1000:.0f} ms past its "
                                                        "queueing budget for the model; retry"))
                continue
            group.append(caller)
            size += len(caller.rows)
        return group


def _settle(future: asyncio.Future, result: object = None, error: Exception | None = None) -> None:
    if future.done():  # the caller went away meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
