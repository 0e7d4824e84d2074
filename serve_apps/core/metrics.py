"""What every model replica exports for Prometheus, through Ray Serve's metrics API.

Ray exports them on each node's metrics port (``ray_`` prefixed, counters ``_total`` suffixed) with Serve's own
``application``, ``deployment`` and ``replica`` tags, so one name covers every model on the serving core:

* the model: ``recsys_model_info{version}`` (1, for the version served; Ray drops the series of a version no
  longer served),
  ``recsys_model_load_seconds{version}``, ``recsys_model_load_failures{version,reason}``,
  ``recsys_model_behind_target`` (1 while the version served is not the one the settings name, e.g. ``LATEST``);
* the work: ``recsys_model_call_rows`` and ``recsys_model_call_seconds`` (histograms per model call),
  ``recsys_lane_waiting_rows``;
* the HTTP edge: ``recsys_requests{route,code}``, ``recsys_request_seconds{route}`` and
  ``recsys_requests_refused{code,reason}`` (every 4xx and 503 by why);
* the inputs: ``recsys_feature_rows{feature}`` and ``recsys_feature_unknown{feature}`` (rows whose value fell into
  the out-of-vocabulary slot);
* the answers, per version: ``recsys_answer_top1_score`` and ``recsys_answer_score_mass`` (the top-k's summed
  score), histograms of a uniform sample of up to :data:`DISTRIBUTION_SAMPLE` rows per model call;
  ``recsys_answers`` and ``recsys_answers_popular`` (answers whose top item is one of the model's most popular);
* a hot swap's response shift (:mod:`serve_apps.core.response_shift`): ``recsys_response_shift_psi`` and
  ``recsys_response_shift_overlap`` ``{version,baseline}``.

Each call costs a few microseconds: a handful per model call and two per request (``make bench`` measures it).
Ray forgets a gauge that is not set again within two report intervals, so :meth:`ReplicaMetrics.keep_gauges` sets
them again every second while the replica lives.
"""

from __future__ import annotations

import asyncio

import numpy as np
from ray.serve import metrics

DISTRIBUTION_SAMPLE = 64  # rows per model call observed in the answer histograms; the rest cost nothing
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROWS = tuple(float(2 ** i) for i in range(11))
_SCORE = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


class ReplicaMetrics:
    """One replica's metrics; created in the replica (Serve adds its tags then). ``enabled=False`` makes every
    method a no-op, to measure what they cost."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._gauges: dict[str, tuple[metrics.Gauge, float, dict[str, str] | None]] = {}
        if not enabled:
            return
        self._info = metrics.Gauge("recsys_model_info", "1 for the model version this replica serves",
                                   tag_keys=("version",))
        self._load_seconds = metrics.Gauge("recsys_model_load_seconds", "fetch, verification, load and warm-up "
                                           "of a version", tag_keys=("version",))
        self._load_failures = metrics.Counter("recsys_model_load_failures", "versions refused: not loadable, or "
                                              "answering too differently", tag_keys=("version", "reason"))
        self._behind = metrics.Gauge("recsys_model_behind_target", "1 while the version served is not the one the "
                                     "settings name (a version, or the store's LATEST)")
        self._call_rows = metrics.Histogram("recsys_model_call_rows", "rows per model call", boundaries=list(_ROWS))
        self._call_seconds = metrics.Histogram("recsys_model_call_seconds", "duration of a model call",
                                               boundaries=list(_SECONDS))
        self._waiting = metrics.Gauge("recsys_lane_waiting_rows", "rows queued for the model when a batch joins them")
        self._requests = metrics.Counter("recsys_requests", "HTTP requests answered", tag_keys=("route", "code"))
        self._request_seconds = metrics.Histogram("recsys_request_seconds", "time from the replica taking up an "
                                                  "HTTP request to its answer", boundaries=list(_SECONDS),
                                                  tag_keys=("route",))
        self._refused = metrics.Counter("recsys_requests_refused", "requests answered 4xx or 503, by reason",
                                        tag_keys=("code", "reason"))
        self._feature_rows = metrics.Counter("recsys_feature_rows", "rows seen per input feature",
                                             tag_keys=("feature",))
        self._feature_unknown = metrics.Counter("recsys_feature_unknown", "rows whose feature value the model has "
                                                "no embedding for (out of vocabulary)", tag_keys=("feature",))
        self._top1 = metrics.Histogram("recsys_answer_top1_score", "score of the first item of an answer (sampled)",
                                       boundaries=list(_SCORE), tag_keys=("version",))
        self._mass = metrics.Histogram("recsys_answer_score_mass", "summed scores of an answer's items (sampled)",
                                       boundaries=list(_SCORE), tag_keys=("version",))
        self._answers = metrics.Counter("recsys_answers", "answers given", tag_keys=("version",))
        self._popular = metrics.Counter("recsys_answers_popular", "answers whose first item is one of the model's "
                                        "most popular items", tag_keys=("version",))
        self._shift_psi = metrics.Gauge("recsys_response_shift_psi", "population stability index of the top-1 "
                                        "score, a loaded version against the one serving, on recent requests",
                                        tag_keys=("version", "baseline"))
        self._shift_overlap = metrics.Gauge("recsys_response_shift_overlap", "mean share of top-k items a loaded "
                                            "version has in common with the one serving, on recent requests",
                                            tag_keys=("version", "baseline"))
        self._sample = np.random.default_rng()

    async def keep_gauges(self) -> None:
        """Set every gauge to its last value again, every second, until cancelled."""
        while self.enabled:
            await asyncio.sleep(1.0)
            for gauge, value, tags in list(self._gauges.values()):
                gauge.set(value, tags=tags)

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
            self._load_failures.inc(tags={"version": version, "reason": reason})

    def behind_target(self, behind: bool) -> None:
        if self.enabled:
            self._set("behind", self._behind, int(behind))

    def model_call(self, rows: int, seconds: float) -> None:
        if not self.enabled:
            return
        self._call_rows.observe(rows)
        self._call_seconds.observe(seconds)

    def lane_waiting(self, rows: int) -> None:
        if self.enabled:
            self._set("waiting", self._waiting, rows)

    def request(self, route: str, code: int, seconds: float) -> None:
        if not self.enabled:
            return
        self._requests.inc(tags={"route": route, "code": str(code)})
        self._request_seconds.observe(seconds, tags={"route": route})

    def refused(self, code: int, reason: str) -> None:
        if self.enabled:
            self._refused.inc(tags={"code": str(code), "reason": reason})

    def features(self, unknown: dict[str, np.ndarray]) -> None:
        """Per feature, a boolean per row: True where its value is out of vocabulary."""
        if not self.enabled:
            return
        for feature, flags in unknown.items():
            self._feature_rows.inc(len(flags), tags={"feature": feature})
            count = int(np.count_nonzero(flags))
            if count:
                self._feature_unknown.inc(count, tags={"feature": feature})

    def answers(self, version: str, top1: np.ndarray, mass: np.ndarray, popular: np.ndarray | None) -> None:
        """One model call's answers: per answer that has items, its top-1 score, its score mass and (if the model
        knows its popular items) whether its first item is one of them."""
        if not self.enabled or not len(top1):
            return
        tags = {"version": version}
        self._answers.inc(len(top1), tags=tags)
        if popular is not None and popular.any():
            self._popular.inc(int(np.count_nonzero(popular)), tags=tags)
        sample = (self._sample.choice(len(top1), DISTRIBUTION_SAMPLE, replace=False)
                  if len(top1) > DISTRIBUTION_SAMPLE else slice(None))
        for score, total in zip(top1[sample].tolist(), mass[sample].tolist()):
            self._top1.observe(score, tags=tags)
            self._mass.observe(total, tags=tags)

    def shift(self, version: str, baseline: str, psi: float, overlap: float) -> None:
        if not self.enabled:
            return
        tags = {"version": version, "baseline": baseline}
        self._set("shift_psi", self._shift_psi, psi, tags)
        self._set("shift_overlap", self._shift_overlap, overlap, tags)
