"""The ranking model's serving signature: the one interface between the trained model and what runs it.

``serving_default`` takes a search's context and its candidate properties, and returns them ranked:

    city_id         int64   [batch]          the city searched (unknown cities are ranked too)
    booker_country  string  [batch]
    device_class    string  [batch]
    nights          int32   [batch]          length of stay
    adults          int32   [batch]
    children        int32   [batch]
    rooms           int32   [batch]
    saturday_night  int32   [batch]          1 if the stay includes a Saturday night
    properties      int64   [batch, n]       candidate property ids; 0 pads
    prices          float32 [batch, n]       today's nightly price; 0 or less: the catalogue's price
    k               int32   []               how many to return (capped at n)
    ->
    properties      int64   [batch, k]       best first (0 where a row had fewer than k candidates)
    scores          float32 [batch, k]       the share of the search's bookings each would get

Static features of known properties come from the catalogue inside the SavedModel; unknown ids are ranked on
their price alone with the catalogue's typical features.
"""

from __future__ import annotations

import tensorflow as tf

from recsys import saved_model
from recsys.manifest import Signature

NAME = saved_model.NAME
CONTEXT_INPUTS = {
    "city_id": tf.TensorSpec([None], tf.int64, name="city_id"),
    "booker_country": tf.TensorSpec([None], tf.string, name="booker_country"),
    "device_class": tf.TensorSpec([None], tf.string, name="device_class"),
    "nights": tf.TensorSpec([None], tf.int32, name="nights"),
    "adults": tf.TensorSpec([None], tf.int32, name="adults"),
    "children": tf.TensorSpec([None], tf.int32, name="children"),
    "rooms": tf.TensorSpec([None], tf.int32, name="rooms"),
    "saturday_night": tf.TensorSpec([None], tf.int32, name="saturday_night"),
}
INPUTS = {
    **CONTEXT_INPUTS,
    "properties": tf.TensorSpec([None, None], tf.int64, name="properties"),
    "prices": tf.TensorSpec([None, None], tf.float32, name="prices"),
    "k": tf.TensorSpec([], tf.int32, name="k"),
}
OUTPUTS = {
    "properties": tf.TensorSpec([None, None], tf.int64, name="properties"),
    "scores": tf.TensorSpec([None, None], tf.float32, name="scores"),
}


def describe() -> Signature:
    """The contract as the manifest records it."""
    return saved_model.describe(INPUTS, OUTPUTS)
