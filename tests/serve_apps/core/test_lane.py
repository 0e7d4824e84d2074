"""The inference lane: one call at a time, merging what waits, errors only to the callers they belong to."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serve_apps.core.errors import Overloaded
from serve_apps.core.lane import InferenceLane


class Model:
    """Doubles each caller's rows; blocks each call until released, so tests decide what queues behind it.
    ``calls`` records each call's rows, all callers' together."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, callers: list[list[int]]) -> list[list[int]]:
        items = [item for rows in callers for item in rows]
        self.calls.append(items)
        self.started.set()
        self.release.wait(timeout=10)
        if -1 in items:
            raise ValueError("bad input")
        return [[2 * item for item in rows] for rows in callers]


async def busy(model: Model, max_rows: int) -> tuple[InferenceLane, asyncio.Task]:
    """A lane whose model is busy with a first call of [1] (held until ``model.release`` is set)."""
    lane = InferenceLane(model, max_rows=max_rows)
    first = asyncio.create_task(lane.run([1]))
    await asyncio.to_thread(model.started.wait, 10)
    return lane, first


def test_a_lone_call_runs_at_once():
    model = Model()
    model.release.set()

    async def scenario():
        lane = InferenceLane(model, max_rows=8)
        assert await lane.run([1, 2]) == [2, 4]
        lane.close()
    asyncio.run(scenario())
    assert model.calls == [[1, 2]]


def test_calls_that_wait_behind_a_busy_model_are_merged_up_to_max_rows():
    model = Model()

    async def scenario():
        lane, first = await busy(model, max_rows=4)
        waiting = [asyncio.create_task(lane.run(items)) for items in ([2, 3], [4], [5], [6, 7])]
        await asyncio.sleep(0.05)
        model.release.set()
        return await first, await asyncio.gather(*waiting)

    first, waiting = asyncio.run(scenario())
    assert first == [2]
    assert waiting == [[4, 6], [8], [10], [12, 14]]  # each caller gets its own rows back, in order
    assert model.calls == [[1], [2, 3, 4, 5], [6, 7]]  # 4 rows fit one call; [6, 7] would make 6


def test_a_failing_call_is_split_until_only_the_caller_whose_rows_fail_gets_the_error():
    model = Model()

    async def scenario():
        lane, first = await busy(model, max_rows=8)
        good = [asyncio.create_task(lane.run(items)) for items in ([2], [3])]
        bad = asyncio.create_task(lane.run([-1, 5]))
        after = asyncio.create_task(lane.run([4]))
        await asyncio.sleep(0.05)
        model.release.set()
        assert await first == [2]
        with pytest.raises(ValueError, match="bad input"):
            await bad
        assert [await task for task in good] == [[4], [6]]
        assert await after == [8]
        assert await lane.run([7]) == [14]  # and the lane goes on
    asyncio.run(scenario())
    # The merged call fails; its halves run again until the failing caller is alone.
    assert model.calls == [[1], [2, 3, -1, 5, 4], [2, 3], [-1, 5, 4], [-1, 5], [4], [7]]


def test_a_cancelled_caller_is_left_out_of_the_next_call():
    model = Model()

    async def scenario():
        lane, first = await busy(model, max_rows=8)
        gone = asyncio.create_task(lane.run([2]))
        kept = asyncio.create_task(lane.run([3]))
        await asyncio.sleep(0.01)
        gone.cancel()
        model.release.set()
        assert await first == [2] and await kept == [6]
    asyncio.run(scenario())
    assert model.calls == [[1], [3]]


def test_rows_still_waiting_past_their_deadline_never_join_a_call():
    model = Model()

    async def scenario():
        lane, first = await busy(model, max_rows=8)
        late = asyncio.create_task(lane.run([2], deadline=time.time() + 0.02))
        in_time = asyncio.create_task(lane.run([3], deadline=time.time() + 60))
        unbounded = asyncio.create_task(lane.run([4]))
        await asyncio.sleep(0.1)  # the first call is still running: [2] misses its deadline
        model.release.set()
        assert await first == [2]
        with pytest.raises(Overloaded, match="past its queueing budget"):
            await late
        assert await in_time == [6] and await unbounded == [8]
    asyncio.run(scenario())
    assert model.calls == [[1], [3, 4]]
