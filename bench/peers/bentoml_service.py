"""BentoML serving the SavedModel with its adaptive batching (a batchable API: lists from concurrent requests are
merged into one model call).

    MODEL_DIR=.../saved_model bench/.peers/bentoml/bin/bentoml serve bench.peers.bentoml_service:Destinations \
        --host 127.0.0.1 --port 8103
"""

import os

import bentoml
import tensorflow as tf

HISTORY = 8


@bentoml.service(workers=1, traffic={"timeout": 30})
class Destinations:
    def __init__(self) -> None:
        self.signature = tf.saved_model.load(os.environ["MODEL_DIR"]).signatures["serving_default"]

    # Batches as large as our Serve app forms, and queue (not shed) under load, as Serve does.
    @bentoml.api(batchable=True, max_batch_size=1024, max_latency_ms=1000)
    def recommend(self, trips: list[dict]) -> list[dict]:
        cities = [t["cities"][-HISTORY:] for t in trips]
        k = max(t.get("k", 4) for t in trips)
        out = self.signature(
            cities=tf.constant([c + [0] * (HISTORY - len(c)) for c in cities], tf.int64),
            booker_country=tf.constant([t["booker_country"] for t in trips]),
            device_class=tf.constant([t["device_class"] for t in trips]),
            affiliate_id=tf.constant([t.get("affiliate_id") or 0 for t in trips], tf.int64),
            k=tf.constant(k, tf.int32))
        ids, scores = out["cities"].numpy(), out["scores"].numpy()
        return [{"cities": ids[i, : t.get("k", 4)].tolist(), "scores": scores[i, : t.get("k", 4)].tolist()}
                for i, t in enumerate(trips)]
