from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from recsys.destinations import signature
from recsys.errors import ModelContractError
from recsys.destinations.features import Vocabulary
from recsys.destinations.model import DestinationRecommender, FeatureEncoder, ModelConfig, build_network, last_cities
from recsys.destinations.runtime import Predictor, pad_trips

VOCABULARY = Vocabulary(cities=[101, 102, 103, 104, 105, 106], booker_countries=["Elbonia", "Gondal"],
                        device_classes=["desktop", "mobile"], affiliates=[7, 8])


@pytest.mark.parametrize(("cities", "expected"), [
    ([[5, 6, 7, 0, 0]], [[0, 5, 6, 7]]),
    ([[0, 0, 5, 6, 7]], [[0, 5, 6, 7]]),
    ([[5, 0, 6, 0, 7]], [[0, 5, 6, 7]]),
    ([[1, 2, 3, 4, 5, 6]], [[3, 4, 5, 6]]),
    ([[9]], [[0, 0, 0, 9]]),
    ([[1, 2, 0], [3, 0, 0]], [[0, 0, 1, 2], [0, 0, 0, 3]]),
], ids=["right-padded", "left-padded", "padding-between", "longer-than-history", "one-city", "ragged-batch"])
def test_last_cities_takes_the_latest_cities_whatever_the_padding(cities, expected):
    assert last_cities(tf.constant(cities, tf.int64), 4).numpy().tolist() == expected


def test_encoder_maps_unknown_values_to_out_of_vocabulary_and_keeps_padding():
    encoded = FeatureEncoder(VOCABULARY)({
        "history": tf.constant([[0, 101, 106, 999]], tf.int64),
        "booker_country": tf.constant(["Gondal"]),
        "device_class": tf.constant(["smart-fridge"]),
        "affiliate_id": tf.constant([8], tf.int64),
    })
    assert encoded["history"].numpy().tolist() == [[0, 2, 7, 1]]
    assert encoded["booker_country"].numpy().tolist() == [2]
    assert encoded["device_class"].numpy().tolist() == [0]
    assert encoded["affiliate_id"].numpy().tolist() == [2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small network trained a few steps, exported with the serving signature."""
    config = ModelConfig(history_length=3, city_embedding_dim=8, hidden_units=16)
    keras.utils.set_random_seed(0)
    network = build_network(config, VOCABULARY.sizes())
    network.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    inputs = {"history": rng.integers(0, 8, (64, 3)), "booker_country": rng.integers(0, 3, 64),
              "device_class": rng.integers(0, 3, 64), "affiliate_id": rng.integers(0, 3, 64)}
    network.fit(inputs, rng.integers(2, 8, 64), epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("model") / "saved_model"
    DestinationRecommender(network, VOCABULARY, config).save(str(path))
    return network, path


REQUEST = {
    "cities": pad_trips([[101, 102], [103], [104, 105, 106, 101], [999_999, 102]]),
    "booker_country": ["Elbonia", "Gondal", "Nowhere", "Elbonia"],
    "device_class": ["mobile", "desktop", "mobile", "tablet"],
    "affiliate_id": np.array([7, 0, 8, 12345]),
}


def test_saved_model_gives_the_same_top_k_as_the_trained_network(exported):
    network, path = exported
    cities, scores = Predictor(path).predict(**REQUEST, k=3)

    encoded = FeatureEncoder(VOCABULARY)({
        "history": last_cities(tf.constant(REQUEST["cities"]), 3),
        "booker_country": tf.constant(REQUEST["booker_country"]),
        "device_class": tf.constant(REQUEST["device_class"]),
        "affiliate_id": tf.constant(REQUEST["affiliate_id"], tf.int64),
    })
    logits = network(encoded, training=False).numpy()[:, 2:]  # drop padding and out-of-vocabulary
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    expected = np.argsort(-probabilities, axis=1, kind="stable")[:, :3]
    assert cities.tolist() == np.array(VOCABULARY.cities)[expected].tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(probabilities, expected, axis=1), rtol=1e-5)


def test_only_bookable_cities_are_recommended_and_k_is_capped(exported):
    _, path = exported
    cities, scores = Predictor(path).predict(**REQUEST, k=100)
    assert cities.shape == (4, len(VOCABULARY.cities))
    assert set(cities.ravel().tolist()) == set(VOCABULARY.cities)
    assert (np.diff(scores, axis=1) <= 0).all()
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_the_manifest_describes_the_signature_the_model_has(exported):
    _, path = exported
    function = tf.saved_model.load(str(path)).signatures[signature.NAME]
    described = signature.describe()
    assert set(described.inputs) == set(function.structured_input_signature[1])
    assert set(described.outputs) == set(function.structured_outputs)


def test_a_model_with_another_signature_is_refused(tmp_path):
    module = tf.Module()
    module.serve = tf.function(lambda cities: {"cities": cities},
                               input_signature=[tf.TensorSpec([None, None], tf.int64, name="cities")])
    tf.saved_model.save(module, str(tmp_path / "wrong"), signatures={signature.NAME: module.serve})
    with pytest.raises(ModelContractError, match=r"has inputs \['cities'\], expected \['affiliate_id', "):
        Predictor(tmp_path / "wrong")


def test_a_directory_without_a_saved_model_is_refused(tmp_path):
    with pytest.raises(ModelContractError, match="not a loadable SavedModel"):
        Predictor(tmp_path)


def test_pad_trips_right_pads_and_keeps_the_latest_cities():
    assert pad_trips([[1, 2, 3], [4]]).tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad_trips([[1, 2, 3], [4]], width=2).tolist() == [[2, 3], [4, 0]]
    assert pad_trips([[1]], width=3).tolist() == [[1, 0, 0]]
    assert pad_trips([]).shape == (0, 1)
