"""BentoML serving the SavedModel with its adaptive batching (a batchable API: lists from concurrent requests are
merged into one model call).

    MODEL_DIR=.../saved_model bench/.peers/bentoml/bin/bentoml serve bench.peers.bentoml_service:Destinations \
        --host 127.0.0.1 --port 8103
"""

import os

import bentoml

from bench.peers import saved_model


@bentoml.service(workers=1, traffic={"timeout": 30})
class Destinations:
    def __init__(self) -> None:
        self.signature = saved_model.load(os.environ["MODEL_DIR"])

    # Batches as large as our Serve app forms, and queue (not shed) under load, as Serve does.
    @bentoml.api(batchable=True, max_batch_size=1024, max_latency_ms=1000)
    def recommend(self, trips: list[dict]) -> list[dict]:
        return saved_model.recommend(self.signature, trips)
