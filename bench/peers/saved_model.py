"""The SavedModel as the peers call it: a list of trips in (our request bodies), one model call, top-k out."""

import tensorflow as tf

HISTORY = 8  # the model's history_length: trips are cut and padded to it


def load(model_dir: str):
    return tf.saved_model.load(model_dir).signatures["serving_default"]


def recommend(signature, trips: list[dict]) -> list[dict]:
    cities = [t["cities"][-HISTORY:] for t in trips]
    out = signature(
        cities=tf.constant([c + [0] * (HISTORY - len(c)) for c in cities], tf.int64),
        booker_country=tf.constant([t["booker_country"] for t in trips]),
        device_class=tf.constant([t["device_class"] for t in trips]),
        affiliate_id=tf.constant([t.get("affiliate_id") or 0 for t in trips], tf.int64),
        k=tf.constant(max(t.get("k", 4) for t in trips), tf.int32))
    ids, scores = out["cities"].numpy(), out["scores"].numpy()
    return [{"cities": ids[i, : t.get("k", 4)].tolist(), "scores": scores[i, : t.get("k", 4)].tolist()}
            for i, t in enumerate(trips)]
