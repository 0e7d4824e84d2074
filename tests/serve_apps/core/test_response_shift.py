"""The response-shift measures on answers built by hand: PSI on the serving version's deciles, top-k overlap, and
the ring buffer of recent request rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from serve_apps.core.response_shift import RecentRequests, beyond_limits, first_values, measure, psi, sums


def answers(items: list[list[int]], scores: list[list[float]]) -> dict[str, pa.Array]:
    return {"cities": pa.array(items, pa.list_(pa.int64())), "scores": pa.array(scores, pa.list_(pa.float32()))}


def test_the_same_distribution_has_no_shift_and_a_moved_one_a_large_one():
    rng = np.random.default_rng(0)
    serving = rng.beta(2, 5, 5000)
    assert psi(serving, rng.beta(2, 5, 5000)) < 0.01
    assert psi(serving, rng.beta(5, 2, 5000)) > 1.0
    assert psi(serving, serving) == 0.0


def test_psi_stays_finite_when_the_serving_scores_are_all_equal_or_a_bin_is_empty():
    assert psi(np.full(100, 0.2), np.full(100, 0.2)) == 0.0
    moved = psi(np.full(100, 0.2), np.linspace(0.3, 0.9, 100))
    assert np.isfinite(moved) and moved > 1.0
    assert psi(np.array([]), np.array([0.5])) == 0.0


def test_measure_compares_top_1_scores_and_the_share_of_common_items():
    serving = answers([[1, 2, 3, 4], [5, 6], []], [[0.5, 0.2, 0.1, 0.1], [0.7, 0.1], []])
    same = measure(serving, serving, "cities")
    assert same == (0.0, 1.0)
    other = answers([[1, 9, 8, 7], [6, 5], [3]], [[0.5, 0.2, 0.1, 0.1], [0.7, 0.1], [0.9]])
    _, overlap = measure(serving, other, "cities")
    assert overlap == pytest.approx((1 / 4 + 2 / 2) / 2)  # the empty answer is not compared


def test_first_values_and_sums_read_sliced_list_columns():
    column = pa.array([[9.0], [0.5, 0.25], [], [0.1, 0.2, 0.3]], pa.list_(pa.float32())).slice(1)
    first, present = first_values(column)
    assert present.tolist() == [True, False, True]
    assert first[present].tolist() == pytest.approx([0.5, 0.1])
    assert sums(column).tolist() == pytest.approx([0.75, 0.0, 0.6])


def test_recent_requests_keep_the_newest_rows_up_to_capacity():
    recent = RecentRequests(capacity=10)
    assert recent.rows() is None
    for start in range(0, 30, 4):
        recent.add(pa.record_batch({"i": list(range(start, start + 4))}))
    rows = recent.rows()
    assert rows["i"].to_pylist() == list(range(22, 32))


@pytest.mark.parametrize(("limits", "problems"), [
    ((None, None), []),
    ((0.5, 0.5), []),
    ((0.25, None), ["top-1 score PSI 0.300 above the limit 0.25"]),
    ((0.25, 0.9), ["top-1 score PSI 0.300 above the limit 0.25", "top-k overlap 0.800 below the limit 0.9"]),
], ids=["no-limits", "within", "psi", "both"])
def test_only_the_limits_set_can_refuse_a_version(limits, problems):
    assert beyond_limits(0.3, 0.8, *limits) == problems
