"""The ranking network and its export: the SavedModel's signature ranks as the Keras network scores, whatever the
candidates (unknown ids, today's prices, padding, k)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from recsys.accommodations import signature
from recsys.accommodations.catalogue import Catalogue
from recsys.accommodations.features import CONTEXT, ITEMS, Vocabulary, lists_from_searches
from recsys.accommodations.model import (
    AccommodationRanker,
    FeatureEncoder,
    ModelConfig,
    build_network,
    listwise_softmax_loss,
    ndcg,
)
from recsys.accommodations.runtime import AccommodationRuntime, Ranker, Searches
from recsys.errors import ModelContractError

CONFIG = ModelConfig(list_size=40, property_embedding_dim=4, city_embedding_dim=4, hidden_units=16)


@pytest.fixture(scope="module")
def exported(smoke_searches, tmp_path_factory):
    lists = lists_from_searches(pq.read_table(smoke_searches).slice(0, 6000), CONFIG.list_size)
    vocabulary, catalogue = Vocabulary.fit(lists), Catalogue.from_lists(lists)
    tf.keras.utils.set_random_seed(3)
    network = build_network(CONFIG, vocabulary.sizes())
    path = tmp_path_factory.mktemp("ranker") / "saved_model"
    AccommodationRanker(network, vocabulary, catalogue).save(str(path))
    return {"lists": lists, "network": network, "ranker": Ranker(path), "vocabulary": vocabulary,
            "catalogue": catalogue}


def keras_scores(exported, rows: slice) -> np.ndarray:
    lists = exported["lists"]
    raw = {name: tf.constant(lists[name][rows]) for name in (*CONTEXT, *ITEMS)}
    raw["position"] = tf.zeros_like(raw["position"])
    encoder = FeatureEncoder(exported["vocabulary"], exported["catalogue"].city_medians())
    return tf.nn.softmax(exported["network"](encoder(raw), training=False), axis=1).numpy()


def test_the_signature_ranks_the_candidates_as_the_keras_network_scores_them(exported):
    lists, rows = exported["lists"], slice(0, 50)
    expected = keras_scores(exported, rows)
    context = {name: lists[name][rows] for name in signature.CONTEXT_INPUTS}
    ranked, scores = exported["ranker"].rank(context, lists["prop_id"][rows], lists["price"][rows], 40)
    for i in range(50):
        shown = lists["prop_id"][i] != 0
        order = np.argsort(-expected[i][shown], kind="stable")
        assert ranked[i][: shown.sum()].tolist() == lists["prop_id"][i][shown][order].tolist()
        np.testing.assert_allclose(scores[i][: shown.sum()], expected[i][shown][order], rtol=1e-4, atol=1e-6)
        assert (ranked[i][shown.sum():] == 0).all() and (scores[i][shown.sum():] == 0).all()


def test_unknown_properties_and_cities_are_ranked_and_todays_price_counts(exported):
    lists = exported["lists"]
    context = {name: lists[name][:1] for name in signature.CONTEXT_INPUTS}
    context["city_id"] = np.array([987654321])
    candidates = np.array([[lists["prop_id"][0, 0], 123456789, lists["prop_id"][0, 1]]])
    prices = np.array([[0.0, 80.0, 0.0]], np.float32)
    ranked, scores = exported["ranker"].rank(context, candidates, prices, 10)
    assert sorted(ranked[0].tolist()) == sorted(candidates[0].tolist())  # k capped at the candidates
    assert scores[0].sum() == pytest.approx(1.0, rel=1e-4)

    def score_of_first(price: float) -> float:
        ranked, scores = exported["ranker"].rank(context, candidates, np.array([[price, 80.0, 0.0]], np.float32), 3)
        return dict(zip(ranked[0].tolist(), scores[0].tolist()))[int(candidates[0, 0])]

    assert score_of_first(1.0) != pytest.approx(score_of_first(10_000.0), rel=1e-3)


def test_a_call_pads_each_list_to_its_own_width_and_answers_as_each_search_ranked_alone(exported):
    calls = []

    class Recording:
        def rank(self, context, properties, prices, k):
            calls.append(properties.shape)
            return exported["ranker"].rank(context, properties, prices, k)

    runtime = AccommodationRuntime(Recording(), exported["catalogue"])
    known = np.unique(exported["lists"]["prop_id"][exported["lists"]["prop_id"] != 0])
    # 40 short lists (a width of 64), 2 long ones (256) and 3 very short ones (16): the long ones in a call of their
    # own, the very short ones with the short ones (three lists' padding is not worth a call).
    lengths = [20] * 20 + [200] + [20] * 20 + [3, 5, 2] + [150]
    candidates = [known[i:i + n] for i, n in enumerate(lengths)]
    lists, rows = exported["lists"], len(lengths)
    searches = Searches(city_id=lists["city_id"][:rows], booker_country=lists["booker_country"][:rows],
                        device_class=lists["device_class"][:rows], checkin=["2026-12-18"] * rows,
                        nights=[2] * rows, adults=[2] * rows, children=[0] * rows, rooms=[1] * rows)
    ids, scores = runtime.rank(searches, candidates, [None] * rows, 5, [1, 2, 4, 8, 16, 32, 48, 64])
    assert sorted(calls) == [(2, 256), (48, 64)]
    for i in range(rows):
        calls.clear()
        alone_ids, alone_scores = runtime.rank(Searches(**{name: np.asarray(getattr(searches, name))[i:i + 1]
                                                           for name in Searches.__dataclass_fields__}),
                                               [candidates[i]], [None], 5, [1])
        assert ids[i].tolist() == alone_ids[0].tolist()
        np.testing.assert_allclose(scores[i], alone_scores[0], rtol=1e-5)
    assert [len(row) for row in ids] == [min(5, n) for n in lengths]


def test_a_savedmodel_with_another_signature_is_refused(tmp_path):
    module = tf.Module()
    module.serve = tf.function(lambda city_id: {"properties": city_id},
                               input_signature=[tf.TensorSpec([None], tf.int64, name="city_id")])
    tf.saved_model.save(module, str(tmp_path), signatures={signature.NAME: module.serve})
    with pytest.raises(ModelContractError, match="has inputs \\['city_id'\\], expected"):
        Ranker(tmp_path)


def test_the_loss_prefers_the_booked_property_and_ndcg_is_one_for_the_ideal_order():
    relevance = tf.constant([[0.0, 5.0, 1.0, 0.0]])
    good, bad = tf.constant([[0.0, 3.0, 1.0, -1e9]]), tf.constant([[3.0, 0.0, 1.0, -1e9]])
    assert float(listwise_softmax_loss(relevance, good)[0]) < float(listwise_softmax_loss(relevance, bad)[0])
    assert float(ndcg(relevance, good, 10)[0]) == pytest.approx(1.0)
    assert float(ndcg(relevance, bad, 10)[0]) < 0.7
