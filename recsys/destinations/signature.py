"""The serving signature: the one interface between a trained model and everything that runs it.

``serving_default`` takes raw features and returns the top-k recommendations:

    cities          int64  [batch, length]  the trip so far, oldest first; 0 pads (anywhere)
    booker_country  string [batch]
    device_class    string [batch]
    affiliate_id    int64  [batch]          0 when unknown
    k               int32  []               how many cities to return (capped at the vocabulary size)
    ->
    cities          int64   [batch, k]      recommended city ids, best first
    scores          float32 [batch, k]      their probabilities

Unknown city ids, countries, devices and affiliates are answered (out-of-vocabulary slots), never rejected.
"""

from __future__ import annotations

import tensorflow as tf

from recsys import saved_model
from recsys.manifest import Signature

NAME = saved_model.NAME
INPUTS = {
    "cities": tf.TensorSpec([None, None], tf.int64, name="cities"),
    "booker_country": tf.TensorSpec([None], tf.string, name="booker_country"),
    "device_class": tf.TensorSpec([None], tf.string, name="device_class"),
    "affiliate_id": tf.TensorSpec([None], tf.int64, name="affiliate_id"),
    "k": tf.TensorSpec([], tf.int32, name="k"),
}
OUTPUTS = {
    "cities": tf.TensorSpec([None, None], tf.int64, name="cities"),
    "scores": tf.TensorSpec([None, None], tf.float32, name="scores"),
}


def describe() -> Signature:
    """The contract as the manifest records it."""
    return saved_model.describe(INPUTS, OUTPUTS)
