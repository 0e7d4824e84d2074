"""Many concurrent single calls as few batch requests: each call's row waits at most ``linger_s`` for others (or
until ``max_rows`` are waiting), then they go as one request; at most ``max_in_flight`` requests at once, rows
arriving meanwhile gather into the next one. Each caller gets its own row's answer.

A batch answered 4xx is split in halves and sent again until the rows at fault are alone, so a bad row fails only
its own caller (the service answers a whole batch 422 for one bad row).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from recsys_client.transport import InvalidRequest

Row = TypeVar("Row")
Answer = TypeVar("Answer")


class Coalescer(Generic[Row, Answer]):
    def __init__(self, send: Callable[[Sequence[Row]], Awaitable[list[Answer]]], max_rows: int, linger_s: float,
                 max_in_flight: int) -> None:
        self._send, self._max_rows, self._linger_s = send, max_rows, linger_s
        self._max_in_flight, self._in_flight = max_in_flight, 0
        self._waiting: list[tuple[Row, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def call(self, row: Row) -> Answer:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if len(self._waiting) >= self._max_rows:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._flush)
        return await future

    def _flush(self) -> None:
        """Send what waits, a request per ``max_rows``, while a request slot is free; the rest goes when one is."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting and self._in_flight < self._max_in_flight:
            group, self._waiting = self._waiting[:self._max_rows], self._waiting[self._max_rows:]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._request(group))

    async def _request(self, group: list[tuple[Row, asyncio.Future]]) -> None:
        try:
            await self._run(group)
        finally:
            self._in_flight -= 1
            self._flush()

    async def _run(self, group: list[tuple[Row, asyncio.Future]]) -> None:
        live = [(row, future) for row, future in group if not future.done()]  # a caller may have given up
        if not live:
            return
        try:
            answers = await self._send([row for row, _ in live])
        except InvalidRequest as err:
            if len(live) == 1:
                _settle(live[0][1], error=err)
                return
            middle = len(live) // 2  # in this request's slot, one half after the other
            await self._run(live[:middle])
            await self._run(live[middle:])
        except Exception as err:  # every caller of the request gets what failed it
            for _, future in live:
                _settle(future, error=err)
        else:
            for (_, future), answer in zip(live, answers, strict=True):
                _settle(future, result=answer)


def _settle(future: asyncio.Future, result: object = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
