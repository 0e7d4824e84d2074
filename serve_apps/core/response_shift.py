"""How differently a newly loaded version answers than the one serving, measured before it takes over.

Labels arrive days later; a version that answers differently from its predecessor on the same requests is the
first sign of a broken feature or a bad export. So every replica keeps the request rows of its last few model calls
(:class:`RecentRequests`: the request fields only, at most :data:`RECENT_ROWS`), and when a hot swap has loaded a
new version, both versions answer those rows and :func:`measure` compares the answers:

* ``top1_psi``: the population stability index of the top-1 score (bins: the serving version's deciles). Under
  0.1 is the usual "no shift", over 0.25 "a shift to look at";
* ``topk_overlap``: the mean share of each answer's items that both versions return (1 = the same items).

The shift is reported in ``GET /<model>/model`` and as metrics; ``max_response_shift_psi`` and
``min_response_overlap`` in the ``user_config`` refuse a version beyond them (the old one keeps serving).
"""

from __future__ import annotations

import collections
import datetime as dt

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, Field

RECENT_ROWS = 1024
MIN_ROWS = 100  # fewer recent rows than this (a replica that has barely served): the shift is not measured
_EPSILON = 1e-4  # share given to an empty bin, so that the index stays finite


class ShiftTooLarge(Exception):
    """A loaded version answers the recent requests too differently from the serving one."""


class ResponseShift(BaseModel):
    """A loaded version's answers against the serving version's, on the same recent requests."""

    version: str = Field(description="the version loaded")
    baseline: str = Field(description="the version serving when it was loaded")
    rows: int = Field(description="recent request rows both answered")
    top1_psi: float = Field(description="population stability index of the top-1 score")
    topk_overlap: float = Field(description="mean share of an answer's items both versions return")
    measured_at: dt.datetime
    refused: bool = Field(description="whether the version was refused for it")


class RecentRequests:
    """The request rows of the replica's last model calls, newest last, at most ``capacity`` rows. Appended on
    the inference thread, read on the loader's: a deque's appends and pops are atomic."""

    def __init__(self, capacity: int = RECENT_ROWS) -> None:
        self.capacity = capacity
        self._chunks: collections.deque[pa.RecordBatch] = collections.deque()
        self._rows = 0

    def add(self, rows: pa.RecordBatch) -> None:
        self._chunks.append(rows)
        self._rows += rows.num_rows
        while self._chunks and self._rows - self._chunks[0].num_rows >= self.capacity:
            self._rows -= self._chunks.popleft().num_rows

    def rows(self) -> pa.RecordBatch | None:
        chunks = list(self._chunks)
        if not chunks:
            return None
        rows = pa.concat_batches(chunks)
        return rows.slice(max(rows.num_rows - self.capacity, 0))


def measure(baseline: dict[str, pa.Array], candidate: dict[str, pa.Array], items: str) -> tuple[float, float]:
    """``(top1_psi, topk_overlap)`` of two versions' answers to the same rows: answer columns as a model's
    ``predict`` returns them, ``items`` the list column of item ids, ``scores`` beside it."""
    (base_top1, base_present), (cand_top1, cand_present) = first_values(baseline["scores"]), \
        first_values(candidate["scores"])
    both = base_present & cand_present
    overlaps = [len(set(a) & set(b)) / len(a) for a, b in zip(baseline[items].to_pylist(),
                                                               candidate[items].to_pylist()) if a]
    return psi(base_top1[both], cand_top1[both]), float(np.mean(overlaps)) if overlaps else 1.0


def beyond_limits(psi: float, overlap: float, max_psi: float | None, min_overlap: float | None) -> list[str]:
    """What of a measured shift is beyond the limits set (None: no limit); empty if nothing is."""
    problems = []
    if max_psi is not None and psi > max_psi:
        problems.append(f"top-1 score PSI {psi:.3f} above the limit {max_psi}")
    if min_overlap is not None and overlap < min_overlap:
        problems.append(f"top-k overlap {overlap:.3f} below the limit {min_overlap}")
    return problems


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``, on ``expected``'s decile bins (equal-width
    bins over both when ``expected`` has too few distinct values for deciles)."""
    if not len(expected) or not len(actual):
        return 0.0
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1))[1:-1])
    if len(edges) < 2:  # (nearly) one value: its deciles cannot tell where the other scores went
        low, high = min(expected.min(), actual.min()), max(expected.max(), actual.max())
        edges = np.linspace(low, high, bins + 1)[1:-1] if high > low else np.array([low])
    p = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1) / len(expected)
    q = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1) / len(actual)
    p, q = np.maximum(p, _EPSILON), np.maximum(q, _EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def first_values(column: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """Each list's first value in the values' type (0 for an empty list), and which lists have one."""
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False)
    present = offsets[1:] > offsets[:-1]
    first = np.zeros(len(column), dtype=values.dtype)
    first[present] = values[offsets[:-1][present]]
    return first, present


def sums(column: pa.ListArray) -> np.ndarray:
    """Each list's sum as float64 (0 for an empty list)."""
    offsets = column.offsets.to_numpy()
    values = np.concatenate([[0.0], np.cumsum(column.values.to_numpy(zero_copy_only=False), dtype=np.float64)])
    return values[offsets[1:]] - values[offsets[:-1]]
