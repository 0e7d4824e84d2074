"""What every model replica exports for Prometheus, through Ray Serve's metrics API.

Ray exports them on each node's metrics port (``ray_`` prefixed, counters ``_total`` suffixed) with Serve's own
``application``, ``deployment`` and ``replica`` tags, so one name covers every model on the serving core:

* the model: ``recsys_model_info{version}`` (1, for the version served; Ray drops the series of a version no
  longer served), ``recsys_model_load_seconds{version}``, ``recsys_model_load_failures{version,reason}``,
  ``recsys_model_behind_target`` (1 while the version served is not the one the settings name, e.g. ``LATEST``);
* the work: ``recsys_model_call_rows`` and ``recsys_model_call_seconds`` (histograms per model call),
  ``recsys_lane_waiting_rows`` (read every second);
* the HTTP edge: ``recsys_request_seconds{route,code}`` (a histogram: its ``_count`` counts the answers) and
  ``recsys_requests_refused{code,reason}`` (every error answer by why);
* the inspected rows (below): ``recsys_feature_rows{feature}`` and ``recsys_feature_unknown{feature}`` (rows whose
  value fell into the out-of-vocabulary slot); per version ``recsys_answer_top1_score`` and
  ``recsys_answer_score_mass`` (histograms of the answers' top-1 score and summed top-k scores), ``recsys_answers``
  and ``recsys_answers_popular`` (answers whose top item is one of the model's most popular);
* a hot swap's response shift (:mod:`serve_apps.core.response_shift`): ``recsys_response_shift_psi`` and
  ``recsys_response_shift_overlap`` ``{version,baseline}``.

Cheap enough to leave on (``make bench`` measures it): recording one value in Ray costs ~10 µs of a serving
replica's CPU, so nothing here records per row. Counters add up in the replica and go to Ray once a second; the
rows whose inputs and answers are inspected are a systematic sample, every ``stride``-th row answered, the stride
set each second so that about :data:`INSPECTED_PER_SECOND` rows a second are inspected (all of them under light
traffic). Ray forgets a gauge that is not set again within two report intervals, so gauges are set again every
second too.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
from collections.abc import Callable

import numpy as np
from ray.serve import metrics

INSPECTED_PER_SECOND = 256
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROWS = tuple(float(2 ** i) for i in range(11))
_SCORE = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


class ReplicaMetrics:
    """One replica's metrics; created in the replica (Serve adds its tags then). ``enabled=False`` makes every
    method a no-op, to measure what they cost. Called from the replica's event loop and its inference thread."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[str, tuple[tuple[str, str], ...]]] = collections.Counter()
        self._gauges: dict[str, tuple[metrics.Gauge, float, dict[str, str] | None]] = {}
        self._reporting: asyncio.Task | None = None
        self._sampler = RowSampler(INSPECTED_PER_SECOND)
        if not enabled:
            return
        self._counters = {name: metrics.Counter(f"recsys_{name}", description, tag_keys=tags) for name, description,
                          tags in (
            ("model_load_failures", "versions refused: not loadable, or answering too differently",
             ("version", "reason")),
            ("requests_refused", "requests answered with an error status, by reason", ("code", "reason")),
            ("feature_rows", "inspected rows, per input feature", ("feature",)),
            ("feature_unknown", "inspected rows whose feature value the model has no embedding for (out of "
                                "vocabulary)", ("feature",)),
            ("answers", "inspected answers", ("version",)),
            ("answers_popular", "inspected answers whose first item is one of the model's most popular items",
             ("version",)))}
        self._info = metrics.Gauge("recsys_model_info", "1 for the model version this replica serves",
                                   tag_keys=("version",))
        self._load_seconds = metrics.Gauge("recsys_model_load_seconds", "fetch, verification, load and warm-up "
                                           "of a version", tag_keys=("version",))
        self._behind = metrics.Gauge("recsys_model_behind_target", "1 while the version served is not the one the "
                                     "settings name (a version, or the store's LATEST)")
        self._waiting = metrics.Gauge("recsys_lane_waiting_rows", "rows queued for the model")
        self._call_rows = metrics.Histogram("recsys_model_call_rows", "rows per model call", boundaries=list(_ROWS))
        self._call_seconds = metrics.Histogram("recsys_model_call_seconds", "duration of a model call",
                                               boundaries=list(_SECONDS))
        self._request_seconds = metrics.Histogram("recsys_request_seconds", "time from the replica taking up an "
                                                  "HTTP request to its answer", boundaries=list(_SECONDS),
                                                  tag_keys=("route", "code"))
        self._top1 = metrics.Histogram("recsys_answer_top1_score", "score of the first item of an inspected answer",
                                       boundaries=list(_SCORE), tag_keys=("version",))
        self._mass = metrics.Histogram("recsys_answer_score_mass", "summed scores of an inspected answer's items",
                                       boundaries=list(_SCORE), tag_keys=("version",))
        self._shift_psi = metrics.Gauge("recsys_response_shift_psi", "population stability index of the top-1 "
                                        "score, a loaded version against the one serving, on recent requests",
                                        tag_keys=("version", "baseline"))
        self._shift_overlap = metrics.Gauge("recsys_response_shift_overlap", "mean share of top-k items a loaded "
                                            "version has in common with the one serving, on recent requests",
                                            tag_keys=("version", "baseline"))

    def start_reporting(self, waiting_rows: Callable[[], int] | None = None) -> None:
        """Start the once-a-second report on the running event loop (again: nothing); ``waiting_rows`` reads the
        lane's depth."""
        if self.enabled and self._reporting is None:
            self._reporting = asyncio.get_running_loop().create_task(self._report_forever(waiting_rows))

    def stop_reporting(self) -> None:
        if self._reporting is not None:
            self._reporting.cancel()

    async def _report_forever(self, waiting_rows: Callable[[], int] | None) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.report(waiting_rows() if waiting_rows else None)

    def report(self, waiting_rows: int | None = None) -> None:
        """Send what the counters added up, set every gauge again, and set the stride for the next second."""
        with self._lock:
            counts, self._counts = self._counts, collections.Counter()
            self._sampler.next_period()
        for (name, tags), value in counts.items():
            self._counters[name].inc(value, tags=dict(tags))  # only positive sums are kept: Ray refuses 0
        if waiting_rows is not None:
            self._gauges["waiting"] = self._waiting, waiting_rows, None
        for gauge, value, tags in list(self._gauges.values()):
            gauge.set(value, tags=tags)

    def _count(self, name: str, value: float = 1, **tags: str) -> None:
        if value > 0:
            with self._lock:
                self._counts[name, tuple(sorted(tags.items()))] += value

    def _set(self, name: str, gauge: metrics.Gauge, value: float, tags: dict[str, str] | None = None) -> None:
        """Set ``gauge`` and keep the value as the one ``name`` reports (one series per name)."""
        self._gauges[name] = gauge, value, tags
        gauge.set(value, tags=tags)

    def serving(self, version: str, load_seconds: float) -> None:
        if not self.enabled:
            return
        self._set("info", self._info, 1, {"version": version})
        self._set("load_seconds", self._load_seconds, load_seconds, {"version": version})

    def load_failed(self, version: str, reason: str) -> None:
        if self.enabled:
            self._count("model_load_failures", version=version, reason=reason)

    def behind_target(self, behind: bool) -> None:
        if self.enabled:
            self._set("behind", self._behind, int(behind))

    def model_call(self, rows: int, seconds: float) -> None:
        if not self.enabled:
            return
        self._call_rows.observe(rows)
        self._call_seconds.observe(seconds)

    def request(self, route: str, code: int, seconds: float) -> None:
        if self.enabled:
            self._request_seconds.observe(seconds, tags={"route": route, "code": str(code)})

    def refused(self, code: int, reason: str) -> None:
        if self.enabled:
            self._count("requests_refused", code=str(code), reason=reason)

    def sample(self, rows: int) -> np.ndarray:
        """Which of a model call's ``rows`` to inspect (their indices)."""
        if not self.enabled:
            return np.zeros(0, dtype=np.int64)
        with self._lock:
            return self._sampler.pick(rows)

    def inspected(self, version: str, unknown: dict[str, np.ndarray], top1: np.ndarray, mass: np.ndarray,
                  led_by_popular: np.ndarray | None) -> None:
        """The inspected rows of a model call: per feature, which rows' values are out of vocabulary; per answer
        that has items, its top-1 score, its score mass and (if the model knows its popular items) whether its
        first item is one of them."""
        if not self.enabled:
            return
        for feature, flags in unknown.items():
            self._count("feature_rows", len(flags), feature=feature)
            self._count("feature_unknown", int(np.count_nonzero(flags)), feature=feature)
        if not len(top1):
            return
        self._count("answers", len(top1), version=version)
        if led_by_popular is not None:
            self._count("answers_popular", int(np.count_nonzero(led_by_popular)), version=version)
        tags = {"version": version}
        for score, total in zip(top1.tolist(), mass.tolist()):
            self._top1.observe(score, tags=tags)
            self._mass.observe(total, tags=tags)

    def shift(self, version: str, baseline: str, psi: float, overlap: float) -> None:
        if not self.enabled:
            return
        tags = {"version": version, "baseline": baseline}
        self._set("shift_psi", self._shift_psi, psi, tags)
        self._set("shift_overlap", self._shift_overlap, overlap, tags)


class RowSampler:
    """A systematic sample of the rows a replica answers: every ``stride``-th row, counted across model calls; at
    each :meth:`next_period` the stride becomes what would have picked about ``per_period`` rows of the period
    that ended (1 under light traffic: every row)."""

    def __init__(self, per_period: int) -> None:
        self.per_period = per_period
        self.stride = 1
        self._until_next = 0  # rows to pass over before the next pick
        self._rows = 0  # rows answered in this period

    def pick(self, rows: int) -> np.ndarray:
        """The indices, within a model call of ``rows`` rows, of the rows picked."""
        self._rows += rows
        if self._until_next >= rows:
            self._until_next -= rows
            return np.zeros(0, dtype=np.int64)
        picked = np.arange(self._until_next, rows, self.stride)
        self._until_next = int(picked[-1]) + self.stride - rows
        return picked

    def next_period(self) -> None:
        self.stride = max(1, math.ceil(self._rows / self.per_period))
        self._until_next = min(self._until_next, self.stride - 1)
        self._rows = 0
