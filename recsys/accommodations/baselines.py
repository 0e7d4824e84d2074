"""The yardsticks a ranking model must beat, and the metrics they are compared by.

Every ranker scores the same held-out lists (the properties a search showed); the metrics are those of the Expedia
competition and of booking funnels: NDCG@10 with graded relevance (booking 5, click 1; gains 2^rel - 1) and the
mean reciprocal rank of the property booked. The baselines are fixed sorts: by popularity (booking rate in the
training searches), by review score, by price (cheapest first), and the order the site showed.
"""

from __future__ import annotations

import numpy as np

from recsys.accommodations.searches import BOOKING_RELEVANCE

PADDING = -np.inf


def ranking_metrics(relevance: np.ndarray, scores: np.ndarray, k: int = 10) -> dict[str, float]:
    """``ndcg_at_10`` and ``mrr`` over lists: ``relevance`` and ``scores`` are (lists, n), padding scored -inf."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(relevance, order, axis=1)
    discount = 1 / np.log2(np.arange(2, ranked.shape[1] + 2))
    gains = (2.0 ** ranked - 1) * discount
    descending = -np.sort(-relevance, axis=1)
    ideal = (2.0 ** descending - 1) * discount
    best = ideal[:, :k].sum(1)
    ndcg = np.divide(gains[:, :k].sum(1), best, out=np.zeros(len(best)), where=best > 0)
    booked = ranked == BOOKING_RELEVANCE
    first = np.where(booked.any(1), booked.argmax(1) + 1, np.inf)
    return {f"ndcg_at_{k}": float(ndcg.mean()) if len(ndcg) else 0.0,
            "mrr": float((1 / first).mean()) if len(first) else 0.0}


class Popularity:
    """Each property's booking rate in the training searches (smoothed towards the mean, so a property shown
    twice and booked once does not outrank a steady one)."""

    def __init__(self, prop_id: np.ndarray, relevance: np.ndarray, prior_shows: float = 5.0) -> None:
        shown = prop_id != 0
        props, inverse = np.unique(prop_id[shown], return_inverse=True)
        shows = np.bincount(inverse)
        bookings = np.bincount(inverse, weights=relevance[shown] == BOOKING_RELEVANCE)
        mean = bookings.sum() / max(shows.sum(), 1)
        self._props, self._rate = props, (bookings + prior_shows * mean) / (shows + prior_shows)
        self._mean = mean

    def scores(self, prop_id: np.ndarray) -> np.ndarray:
        at = np.clip(np.searchsorted(self._props, prop_id), 0, len(self._props) - 1)
        rate = np.where(self._props[at] == prop_id, self._rate[at], self._mean)
        return np.where(prop_id != 0, rate, PADDING)


def fixed_sorts(lists: dict[str, np.ndarray], popularity: Popularity) -> dict[str, np.ndarray]:
    """Each baseline's scores for ``lists`` (higher is better)."""
    shown = lists["prop_id"] != 0
    return {
        "popularity": popularity.scores(lists["prop_id"]),
        "review_score": np.where(shown, lists["review"], PADDING),
        "price_ascending": np.where(shown, -lists["price"], PADDING),
        "default_order": np.where(shown, -lists["position"].astype(float), PADDING),
    }
