from __future__ import annotations

import numpy as np
import pytest

from recsys.destinations.baselines import Markov, Popularity, accuracy_at_k


def test_accuracy_at_k_counts_rows_whose_label_is_recommended():
    top = np.array([[1, 2], [3, 4], [5, 6]])
    assert accuracy_at_k(top, np.array([2, 9, 5])) == pytest.approx(2 / 3)
    assert accuracy_at_k(np.zeros((0, 2)), np.zeros(0)) == 0.0


def test_popularity_recommends_the_most_booked_cities_ties_by_id():
    popularity = Popularity(np.array([7, 7, 7, 3, 3, 9, 9, 1]), k=3)
    assert popularity.top.tolist() == [7, 3, 9]
    assert popularity.recommend(2).tolist() == [[7, 3, 9], [7, 3, 9]]


def test_markov_recommends_successors_of_the_last_city_topped_up_by_popularity():
    previous = np.array([1, 1, 1, 2, 2, 2, 5])
    labels = np.array([2, 2, 3, 4, 4, 4, 4])
    markov = Markov(previous, labels, k=3)
    assert markov.recommend(np.array([1, 2, 42])).tolist() == [
        [2, 3, 4],  # successors of 1 by count, then the most popular city not already there
        [4, 2, 3],  # 2 only ever led to 4
        [4, 2, 3],  # never seen: popularity
    ]
