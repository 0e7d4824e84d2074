"""The next-destination model: raw features -> indices -> Keras network -> top-k cities.

Three pieces, so that training and serving share every lookup:

* :class:`FeatureEncoder` maps raw ids and strings to embedding indices (the :class:`~recsys.features.Vocabulary`
  layout); training applies it in ``tf.data``, the exported model inside its signature.
* :func:`build_network` is the Keras network on indices: embeddings of the last N cities through a sequence
  encoder (``gru`` or ``pooled``), embeddings of booker country, device and affiliate, an MLP, and a softmax
  over cities.
* :class:`DestinationRecommender` wraps both with the serving signature that the artifact contract promises, so
  a SavedModel of it answers raw requests with TensorFlow alone (no Keras needed to serve).

Keras here is ``tf_keras`` (Keras 2): Ray Train's TensorFlow backend and ``MultiWorkerMirroredStrategy`` need it.
"""

from __future__ import annotations

from typing import Literal

import tensorflow as tf
import tf_keras as keras
from pydantic import BaseModel, ConfigDict, Field

from recsys.destinations import signature
from recsys.destinations.features import PAD_CITY, Vocabulary

_RESERVED_CITY_SLOTS = 2  # padding and out-of-vocabulary, see Vocabulary


class ModelConfig(BaseModel):
    """Architecture of the network. ``history_length`` is how many of the trip's last cities it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history_length: int = Field(8, ge=1, le=64)
    encoder: Literal["gru", "pooled"] = "gru"
    city_embedding_dim: int = Field(64, ge=4, le=1024)
    context_embedding_dim: int = Field(8, ge=2, le=256)
    hidden_units: int = Field(256, ge=8, le=8192)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


def _lookup(keys: list, offset: int, default: int, key_dtype: tf.DType) -> tf.lookup.StaticHashTable:
    keys_t = tf.constant(keys, dtype=key_dtype) if keys else tf.zeros([0], key_dtype)
    values = tf.range(offset, offset + len(keys), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys_t, values), default_value=default)


class FeatureEncoder(tf.Module):
    """Raw features to embedding indices; anything unknown maps to the out-of-vocabulary slot."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        super().__init__(name="feature_encoder")
        self.cities = _lookup(vocabulary.cities, _RESERVED_CITY_SLOTS, 1, tf.int64)
        self.booker_countries = _lookup(vocabulary.booker_countries, 1, 0, tf.string)
        self.device_classes = _lookup(vocabulary.device_classes, 1, 0, tf.string)
        self.affiliates = _lookup(vocabulary.affiliates, 1, 0, tf.int64)

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        history = features["history"]
        return {
            "history": tf.where(history == PAD_CITY, tf.constant(0, tf.int64), self.cities.lookup(history)),
            "booker_country": self.booker_countries.lookup(features["booker_country"]),
            "device_class": self.device_classes.lookup(features["device_class"]),
            "affiliate_id": self.affiliates.lookup(features["affiliate_id"]),
        }

    def city_index(self, cities: tf.Tensor) -> tf.Tensor:
        return self.cities.lookup(cities)


def build_network(config: ModelConfig, sizes: dict[str, int]) -> keras.Model:
    """The Keras network on encoded features; outputs logits over the city index space."""
    history = keras.Input((config.history_length,), dtype="int64", name="history")
    contexts = {name: keras.Input((), dtype="int64", name=name)
                for name in ("booker_country", "device_class", "affiliate_id")}
    # Left padding keeps the latest city at the last position; the mask hides the padding from the encoder.
    cities = keras.layers.Embedding(sizes["cities"], config.city_embedding_dim, mask_zero=True,
                                    name="city_embedding")(history)
    if config.encoder == "gru":
        trip = keras.layers.GRU(config.hidden_units, name="gru")(cities)
    else:
        pooled = keras.layers.GlobalAveragePooling1D(name="mean_pool")(cities)
        positions = keras.layers.Flatten(name="positions")(cities)
        trip = keras.layers.Concatenate(name="pooled")([pooled, positions])
    vocab_key = {"booker_country": "booker_countries", "device_class": "device_classes",
                 "affiliate_id": "affiliates"}
    context = [keras.layers.Embedding(sizes[vocab_key[name]], config.context_embedding_dim,
                                      name=f"{name}_embedding")(tensor) for name, tensor in contexts.items()]
    x = keras.layers.Concatenate(name="features")([trip, *context])
    x = keras.layers.Dense(config.hidden_units, activation="relu", name="hidden")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    logits = keras.layers.Dense(sizes["cities"], name="logits")(x)
    return keras.Model(inputs={"history": history, **contexts}, outputs=logits, name="destinations")


def last_cities(cities: tf.Tensor, history_length: int) -> tf.Tensor:
    """The last ``history_length`` non-padding cities of each row, left-padded: the network's input layout.

    Rows may be padded with :data:`PAD_CITY` anywhere (a ragged batch padded on the right is the usual case).
    """
    trips = tf.ragged.boolean_mask(cities, cities != PAD_CITY)
    dense = tf.pad(trips.to_tensor(default_value=PAD_CITY), [[0, 0], [0, 1]])
    lengths = trips.row_lengths()
    positions = lengths[:, None] - history_length + tf.range(history_length, dtype=tf.int64)[None, :]
    picked = tf.gather(dense, tf.maximum(positions, 0), batch_dims=1)
    return tf.where(positions >= 0, picked, tf.constant(PAD_CITY, tf.int64))


class DestinationRecommender(tf.Module):
    """The exported model: raw request features in, top-k city ids and their probabilities out."""

    def __init__(self, network: keras.Model, vocabulary: Vocabulary, config: ModelConfig) -> None:
        super().__init__(name="destination_recommender")
        self.network = network
        self.encoder = FeatureEncoder(vocabulary)
        self.index_to_city = tf.constant([PAD_CITY] * _RESERVED_CITY_SLOTS + vocabulary.cities, tf.int64)
        self.history_length = config.history_length
        self.num_cities = len(vocabulary.cities)

    @tf.function(input_signature=list(signature.INPUTS.values()))
    def serve(self, cities, booker_country, device_class, affiliate_id, k):
        encoded = self.encoder({
            "history": last_cities(cities, self.history_length),
            "booker_country": booker_country,
            "device_class": device_class,
            "affiliate_id": affiliate_id,
        })
        logits = self.network(encoded, training=False)
        # Padding and out-of-vocabulary are not destinations anyone can book.
        reserved = tf.concat([tf.fill([_RESERVED_CITY_SLOTS], -1e9),
                              tf.zeros([tf.shape(logits)[1] - _RESERVED_CITY_SLOTS])], axis=0)
        probabilities = tf.nn.softmax(logits + reserved[None, :])
        top = tf.math.top_k(probabilities, k=tf.minimum(k, self.num_cities))
        return {"cities": tf.gather(self.index_to_city, top.indices), "scores": top.values}

    def save(self, path: str) -> None:
        """The SavedModel holds the signature's function and what it uses (the network's variables, the lookup
        tables), not the Keras layer objects: restoring those made TensorFlow's load take 1.8 s of CPU instead of
        0.3 s, paid at every replica start and hot swap, holding the GIL while the replica serves."""
        export = tf.Module(name="destination_recommender")
        export.weights = list(self.network.variables)
        export.encoder = self.encoder
        tf.saved_model.save(export, path, signatures={signature.NAME: self.serve.get_concrete_function()})
