"""Ranking metrics and the fixed-sort baselines, on hand-made lists."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.accommodations.baselines import PADDING, Popularity, ranking_metrics

RELEVANCE = np.array([[0.0, 1, 5, 0], [5, 0, 0, 0]])


@pytest.mark.parametrize(("scores", "ndcg", "mrr"), [
    ([[0.1, 0.5, 0.9, PADDING], [0.9, 0.1, 0.2, PADDING]], 1.0, 1.0),
    ([[0.9, 0.5, 0.1, PADDING], [0.1, 0.9, 0.2, PADDING]], None, (1 / 3 + 1 / 3) / 2),
], ids=["perfect", "booked-third"])
def test_ndcg_and_mrr(scores, ndcg, mrr):
    metrics = ranking_metrics(RELEVANCE, np.array(scores))
    if ndcg is not None:
        assert metrics["ndcg_at_10"] == pytest.approx(ndcg)
    else:
        # list 1: booked third (gain 31 / log2 4), clicked second (1 / log2 3); ideal 31 + 1 / log2 3
        first = (31 / 2 + 1 / np.log2(3)) / (31 + 1 / np.log2(3))
        second = (31 / 2) / 31
        assert metrics["ndcg_at_10"] == pytest.approx((first + second) / 2)
    assert metrics["mrr"] == pytest.approx(mrr)


def test_popularity_is_the_booking_rate_smoothed_towards_the_mean():
    props = np.array([[1, 2, 3], [1, 2, 0], [1, 2, 0], [4, 2, 0]])
    relevance = np.array([[5.0, 0, 0], [5, 0, 0], [0, 5, 0], [5, 0, 0]])
    popularity = Popularity(props, relevance, prior_shows=5)
    mean = 4 / 9  # 4 bookings in 9 shows
    scores = popularity.scores(np.array([[1, 2, 3, 4, 99, 0]]))[0]
    assert scores[:4] == pytest.approx([(2 + 5 * mean) / 8, (1 + 5 * mean) / 9, (0 + 5 * mean) / 6,
                                        (1 + 5 * mean) / 6])
    assert scores[0] > scores[1]  # 2 bookings in 3 shows beat 1 in 4
    assert scores[4] == pytest.approx(mean) and scores[5] == PADDING  # unknown: the mean; padding: never
