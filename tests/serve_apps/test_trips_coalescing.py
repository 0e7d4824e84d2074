"""How the trips app shares one model call among the trips answered at the same time: each trip gets its own slice
back, and rows the model refuses fail only the trip they belong to. Against a stand-in handle (no Ray): what is
under test is the slicing and the isolation, not the transport (tests/serve_apps/test_trips.py runs the real one)."""

from __future__ import annotations

import asyncio
import functools
import types

import pyarrow as pa

from serve_apps.core.errors import InvalidRows, Overloaded
from serve_apps.trips import Trips


class StandInHandle:
    """A model deployment's handle whose ``infer`` doubles each row's ``x`` and refuses a row with ``x`` < 0; it
    records the row count of every call it gets."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[int] = []
        self.infer = self
        self._error = error

    def remote(self, rows: pa.RecordBatch):
        self.calls.append(rows.num_rows)
        return self._answer(rows)

    async def _answer(self, rows: pa.RecordBatch) -> pa.RecordBatch:
        if self._error is not None:
            raise self._error
        values = rows["x"].to_pylist()
        if min(values) < 0:
            raise InvalidRows("rows the model cannot take: negative x")
        return pa.record_batch({"y": [2 * value for value in values]})


def infer(handle: StandInHandle, callers: list[list[int]]) -> list:
    # The method on a stand-in self: a real instance is an ASGI ingress wrapper that needs a Serve replica.
    trips = types.SimpleNamespace(_handles={("app", "Model"): handle})
    trips._infer = functools.partial(Trips.func_or_class._infer, trips)
    return asyncio.run(trips._infer("app", "Model", [pa.record_batch({"x": xs}) for xs in callers], 1000))


def test_one_call_for_every_caller_and_each_gets_its_own_rows_back():
    handle = StandInHandle()
    answers = infer(handle, [[1], [2, 3, 4], [5]])
    assert handle.calls == [5]
    assert [answer["y"].to_pylist() for answer in answers] == [[2], [4, 6, 8], [10]]


def test_rows_the_model_refuses_fail_only_their_caller():
    handle = StandInHandle()
    first, bad, last = infer(handle, [[1], [2, -3], [4]])
    assert handle.calls == [4, 1, 2, 1]  # the shared call, then each caller alone
    assert first["y"].to_pylist() == [2] and last["y"].to_pylist() == [8]
    assert isinstance(bad, InvalidRows)


def test_any_other_failure_is_every_callers_without_asking_again():
    handle = StandInHandle(error=Overloaded("busy"))
    answers = infer(handle, [[1], [2]])
    assert handle.calls == [2] and all(isinstance(answer, Overloaded) for answer in answers)


def test_a_call_that_cannot_be_sent_is_every_callers_error_not_the_routes():
    class Unroutable(StandInHandle):
        def remote(self, rows: pa.RecordBatch):
            raise RuntimeError("no such application")

    answers = infer(Unroutable(), [[1], [2]])
    assert [str(answer) for answer in answers] == ["no such application"] * 2
