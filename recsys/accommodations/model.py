"""The accommodation ranking model: raw search context and candidates -> indices and features -> a score each.

* :class:`FeatureEncoder` turns raw values into what the network reads: embedding indices (unknown values fall
  into an out-of-vocabulary slot), scaled numbers, and each price relative to its city's median; training applies
  it in ``tf.data``, the exported model inside its signature.
* :func:`build_network` scores every (search, property) pair of a list: a property tower (id, type, stars,
  review, location, distance, amenities, relative price) and a context tower (booker country, device, city, stay,
  party) meet in an MLP with their element-wise product, so that what a property is worth depends on who searches.
  Position is a feature only in training, in a separate additive term (a "shallow tower" for position bias): the
  scores learn what was clicked and booked *because of the property*, and at serving every candidate gets the same
  position term, which changes no ranking.
* :class:`AccommodationRanker` wraps both with the catalogue (static features by property id) behind the serving
  signature the artifact contract promises, so a SavedModel answers raw requests with TensorFlow alone.

Keras here is ``tf_keras`` (Keras 2), as for the destination model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras
from pydantic import BaseModel, ConfigDict, Field

from recsys.accommodations import signature
from recsys.accommodations.catalogue import Catalogue
from recsys.accommodations.features import Vocabulary
from recsys.accommodations.searches import AMENITIES

ITEM_NUMBERS = 5 + len(AMENITIES)  # stars, review, location, distance, relative price, amenities
CONTEXT_NUMBERS = 5  # nights, adults, children, rooms, Saturday night
NO_POSITION = 0


class ModelConfig(BaseModel):
    """Architecture of the ranking network. ``list_size`` is the longest list trained on (shown properties)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    list_size: int = Field(40, ge=2, le=200)
    property_embedding_dim: int = Field(16, ge=2, le=256)
    city_embedding_dim: int = Field(16, ge=2, le=256)
    context_embedding_dim: int = Field(8, ge=2, le=64)
    hidden_units: int = Field(128, ge=8, le=4096)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


def _lookup(keys: list, default: int, key_dtype: tf.DType) -> tf.lookup.StaticHashTable:
    keys_t = tf.constant(keys, dtype=key_dtype) if keys else tf.zeros([0], key_dtype)
    values = tf.range(1, 1 + len(keys), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys_t, values), default_value=default)


class FeatureEncoder(tf.Module):
    """Raw list features to the network's inputs."""

    def __init__(self, vocabulary: Vocabulary, city_prices: dict[int, float]) -> None:
        """``city_prices``: each known city's median nightly price (:meth:`Catalogue.city_medians`)."""
        super().__init__(name="feature_encoder")
        self.properties = _lookup(vocabulary.properties, 0, tf.int64)
        self.cities = _lookup(vocabulary.cities, 0, tf.int64)
        self.booker_countries = _lookup(vocabulary.booker_countries, 0, tf.string)
        self.device_classes = _lookup(vocabulary.device_classes, 0, tf.string)
        cities, medians = list(city_prices), list(city_prices.values())
        self.city_median_price = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(cities, tf.int64), tf.constant(medians, tf.float32)),
            default_value=-1.0)

    def __call__(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """``raw``: the context columns (batch,), the item columns (batch, n), amenities (batch, n, A)."""
        prop_id = raw["prop_id"]
        mask = tf.cast(prop_id != 0, tf.float32)
        price = tf.maximum(tf.cast(raw["price"], tf.float32), 0.0)
        # A price relative to the city's median (known cities), else to the list's geometric mean.
        log_price = tf.math.log(price + 1.0)
        known_price = mask * tf.cast(price > 0, tf.float32)
        list_mean = tf.reduce_sum(log_price * known_price, 1) / tf.maximum(tf.reduce_sum(known_price, 1), 1.0)
        median = self.city_median_price.lookup(raw["city_id"])
        reference = tf.where(median > 0, tf.math.log(median + 1.0), list_mean)
        relative = tf.where(price > 0, log_price - reference[:, None], 0.0)
        numbers = tf.concat([
            tf.stack([raw["stars"] / 5.0, raw["review"] / 5.0, raw["location"] / 5.0,
                      tf.math.log1p(tf.maximum(raw["distance"], 0.0)) / 2.0, tf.clip_by_value(relative, -3.0, 3.0)],
                     axis=-1),
            tf.cast(raw["amenities"], tf.float32)], axis=-1)
        context = tf.stack([tf.cast(raw[name], tf.float32) / scale for name, scale in
                            (("nights", 7.0), ("adults", 4.0), ("children", 3.0), ("rooms", 3.0),
                             ("saturday_night", 1.0))], axis=-1)
        return {
            "prop": tf.where(prop_id == 0, tf.constant(0, tf.int64), self.properties.lookup(prop_id)),
            "prop_type": tf.cast(raw["prop_type"], tf.int64),
            "item_numbers": numbers * mask[..., None],
            "position": tf.cast(raw["position"], tf.int64),
            "mask": mask,
            "booker_country": self.booker_countries.lookup(raw["booker_country"]),
            "device_class": self.device_classes.lookup(raw["device_class"]),
            "city": self.cities.lookup(raw["city_id"]),
            "context_numbers": context,
        }


def build_network(config: ModelConfig, sizes: dict[str, int]) -> keras.Model:
    """Scores for every item of a list, (batch, n): padding at -1e9, the position term added (0 = no position)."""
    items = {name: keras.Input((None,), dtype="int64", name=name) for name in ("prop", "prop_type", "position")}
    numbers = keras.Input((None, ITEM_NUMBERS), dtype="float32", name="item_numbers")
    mask = keras.Input((None,), dtype="float32", name="mask")
    contexts = {name: keras.Input((), dtype="int64", name=name) for name in ("booker_country", "device_class", "city")}
    context_numbers = keras.Input((CONTEXT_NUMBERS,), dtype="float32", name="context_numbers")

    item = keras.layers.Concatenate(name="item_features")([
        keras.layers.Embedding(sizes["properties"], config.property_embedding_dim, name="property_embedding")(
            items["prop"]),
        keras.layers.Embedding(sizes["property_types"], 4, name="type_embedding")(items["prop_type"]),
        numbers])
    item = keras.layers.Dense(config.hidden_units, activation="relu", name="item_tower")(item)
    context = keras.layers.Concatenate(name="context_features")([
        keras.layers.Embedding(sizes["booker_countries"], config.context_embedding_dim, name="country_embedding")(
            contexts["booker_country"]),
        keras.layers.Embedding(sizes["device_classes"], config.context_embedding_dim, name="device_embedding")(
            contexts["device_class"]),
        keras.layers.Embedding(sizes["cities"], config.city_embedding_dim, name="city_embedding")(contexts["city"]),
        context_numbers])
    context = keras.layers.Dense(config.hidden_units, activation="relu", name="context_tower")(context)
    context = keras.layers.Lambda(lambda pair: tf.broadcast_to(pair[0][:, None, :], tf.shape(pair[1])),
                                  name="per_item_context")([context, item])
    x = keras.layers.Concatenate(name="pair")([item, context, keras.layers.Multiply(name="interaction")([item, context])])
    x = keras.layers.Dense(config.hidden_units, activation="relu", name="hidden")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    x = keras.layers.Dense(config.hidden_units // 2, activation="relu", name="hidden_2")(x)
    relevance = keras.layers.Reshape((-1,), name="relevance")(keras.layers.Dense(1, name="score")(x))
    position = keras.layers.Reshape((-1,), name="position_term")(
        keras.layers.Embedding(config.list_size + 1, 1, name="position_bias")(
            keras.layers.Lambda(lambda p: tf.clip_by_value(p, 0, config.list_size), name="clip_position")(
                items["position"])))
    logits = keras.layers.Lambda(lambda t: tf.where(t[2] > 0, t[0] + t[1], -1e9), name="logits")(
        [relevance, position, mask])
    return keras.Model(inputs={**items, "item_numbers": numbers, "mask": mask, **contexts,
                               "context_numbers": context_numbers}, outputs=logits, name="accommodations")


def listwise_softmax_loss(relevance: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of each list against its relevance as a distribution (ListNet's top-one loss)."""
    target = relevance / tf.maximum(tf.reduce_sum(relevance, axis=1, keepdims=True), 1e-9)
    return -tf.reduce_sum(target * tf.nn.log_softmax(logits, axis=1), axis=1)


def ndcg(relevance: tf.Tensor, logits: tf.Tensor, k: int) -> tf.Tensor:
    """NDCG@k of each list, gains 2^relevance - 1 (the Expedia competition's), in TensorFlow."""
    n = tf.minimum(k, tf.shape(logits)[1])
    discount = 1.0 / tf.math.log(tf.range(2.0, tf.cast(n, tf.float32) + 2.0)) * tf.math.log(2.0)
    order = tf.math.top_k(logits, n).indices
    gains = tf.pow(2.0, tf.gather(relevance, order, batch_dims=1)) - 1.0
    ideal = tf.pow(2.0, tf.math.top_k(relevance, n).values) - 1.0
    best = tf.reduce_sum(ideal * discount, axis=1)
    return tf.math.divide_no_nan(tf.reduce_sum(gains * discount, axis=1), best)


class NDCG(keras.metrics.Mean):
    def __init__(self, k: int = 10, name: str | None = None, **kwargs) -> None:
        super().__init__(name=name or f"ndcg_at_{k}", **kwargs)
        self.k = k

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(ndcg(tf.cast(y_true, tf.float32), y_pred, self.k), sample_weight)


class AccommodationRanker(tf.Module):
    """The exported model: a search's context and candidates in, the candidates ranked out."""

    def __init__(self, network: keras.Model, vocabulary: Vocabulary, catalogue: Catalogue) -> None:
        super().__init__(name="accommodation_ranker")
        self.network = network
        self.encoder = FeatureEncoder(vocabulary, catalogue.city_medians())
        # Row 0 stands for a property the catalogue does not know: typical features, no price of its own.
        self.rows = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(catalogue.prop_id, tf.int64), tf.range(1, 1 + len(catalogue), dtype=tf.int64)), default_value=0)
        self.static = {name: tf.constant(np.r_[[typical], values].astype(np.float32)) for name, values, typical in (
            ("prop_type", catalogue.prop_type, 0), ("stars", catalogue.stars, np.median(catalogue.stars)),
            ("review", catalogue.review, np.median(catalogue.review)),
            ("location", catalogue.location, np.median(catalogue.location)),
            ("distance", catalogue.distance, np.median(catalogue.distance)), ("price", catalogue.price, 0.0))}
        self.amenities = tf.constant(np.r_[np.zeros((1, len(AMENITIES))), catalogue.amenities].astype(np.float32))

    @tf.function(input_signature=list(signature.INPUTS.values()))
    def serve(self, city_id, booker_country, device_class, nights, adults, children, rooms, saturday_night,
              properties, prices, k):
        rows = self.rows.lookup(properties)
        raw = {name: tf.gather(table, rows) for name, table in self.static.items()}
        raw.update(prop_id=properties, amenities=tf.gather(self.amenities, rows),
                   price=tf.where(prices > 0, prices, raw["price"]), position=tf.zeros_like(properties),
                   city_id=city_id, booker_country=booker_country, device_class=device_class, nights=nights,
                   adults=adults, children=children, rooms=rooms, saturday_night=saturday_night)
        logits = self.network(self.encoder(raw), training=False)
        top = tf.math.top_k(tf.nn.softmax(logits, axis=1), k=tf.minimum(k, tf.shape(properties)[1]))
        real = tf.gather(properties, top.indices, batch_dims=1)
        return {"properties": real, "scores": tf.where(real != 0, top.values, 0.0)}

    def save(self, path: str) -> None:
        """The signature's function and what it uses (the network's variables, the tables), not the Keras layer
        objects, which made TensorFlow's load several times slower (see the destination model)."""
        export = tf.Module(name="accommodation_ranker")
        export.weights = list(self.network.variables)
        export.encoder = self.encoder
        export.rows = self.rows
        tf.saved_model.save(export, path, signatures={signature.NAME: self.serve.get_concrete_function()})
