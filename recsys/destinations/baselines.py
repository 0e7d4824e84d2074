"""The yardsticks a next-destination model must beat, and the metric they are compared by.

Both baselines are fitted on the training examples of the same job that trains the model and scored on the same
held-out trips, so the numbers in a manifest are comparable with each other.
"""

from __future__ import annotations

import numpy as np


def accuracy_at_k(top_k: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose label is among that row's recommended cities (the Booking.com challenge metric)."""
    if len(labels) == 0:
        return 0.0
    return float((top_k == labels[:, None]).any(axis=1).mean())


class Popularity:
    """Recommends the ``k`` most booked next destinations to everyone."""

    def __init__(self, labels: np.ndarray, k: int) -> None:
        cities, counts = np.unique(labels, return_counts=True)
        order = np.lexsort((cities, -counts))
        self.top = cities[order][:k]

    def recommend(self, n: int) -> np.ndarray:
        return np.tile(self.top, (n, 1))


class Markov:
    """First-order Markov chain: the ``k`` cities most often booked right after the last city of the trip,
    topped up with the most popular ones when a city has fewer than ``k`` known successors."""

    def __init__(self, previous: np.ndarray, labels: np.ndarray, k: int) -> None:
        self.k = k
        self.fallback = Popularity(labels, k).top
        pairs, counts = np.unique(np.stack([previous, labels], axis=1), axis=0, return_counts=True)
        order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
        pairs = pairs[order]
        starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
        self._known = pairs[starts, 0]
        table = np.empty((len(starts), k), dtype=labels.dtype)
        for row, (begin, end) in enumerate(zip(starts, np.r_[starts[1:], len(pairs)])):
            successors = pairs[begin:min(end, begin + k), 1]
            extra = [c for c in self.fallback if c not in successors][: k - len(successors)]
            table[row] = np.concatenate([successors, np.asarray(extra, dtype=labels.dtype)])
        self._table = table

    def recommend(self, previous: np.ndarray) -> np.ndarray:
        row = np.searchsorted(self._known, previous)
        row = np.minimum(row, len(self._known) - 1)
        found = self._known[row] == previous
        return np.where(found[:, None], self._table[row], self.fallback[None, :])
