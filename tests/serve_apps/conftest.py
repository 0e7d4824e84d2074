"""The serving tests' store: the session's trained model plus versions built to differ or to fail."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import tensorflow as tf

from recsys.destinations import signature
from recsys.artifact_store import ModelStore
from recsys.destinations.features import Vocabulary
from recsys.manifest import VOCABULARY_FILE, Metrics
from recsys.destinations.model import DestinationRecommender, ModelConfig, build_network
from tests.serving import NAME


@dataclass(frozen=True)
class ServingStore:
    uri: str
    good: str  # the session's trained model
    other: str  # a different, smaller network with the same vocabulary and signature
    corrupt: str  # published, then one byte flipped in the store
    wrong_signature: str  # a SavedModel whose serving_default is not the contract

    def vocabulary(self) -> Vocabulary:
        return Vocabulary.model_validate(json.loads(ModelStore(self.uri).read_file(NAME, self.good,
                                                                                    VOCABULARY_FILE)))


@pytest.fixture(scope="session")
def serving_store(trained_model, tmp_path_factory) -> ServingStore:
    root = tmp_path_factory.mktemp("serving-store")
    store = ModelStore(str(root / "models"))
    trained = ModelStore(trained_model.store_uri).fetch(NAME, trained_model.version, root / "fetch")
    store.publish(trained.path, trained.manifest)
    vocabulary = Vocabulary.model_validate_json((trained.path / VOCABULARY_FILE).read_text())

    def publish(version: str, build) -> str:
        source = root / version
        build(source)
        (source / VOCABULARY_FILE).write_text(vocabulary.model_dump_json())
        store.publish(source, trained.manifest.model_copy(update={
            "version": version, "created_at": dt.datetime.now(dt.UTC),
            "metrics": Metrics(accuracy_at_4=0.0, baselines=trained.manifest.metrics.baselines, test_trips=0)}))
        return version

    def small_network(path: Path) -> None:
        config = ModelConfig(history_length=8, city_embedding_dim=8, hidden_units=16)
        DestinationRecommender(build_network(config, vocabulary.sizes()), vocabulary, config).save(
            str(path / "saved_model"))

    def other_signature(path: Path) -> None:
        module = tf.Module()
        module.serve = tf.function(lambda cities: {"cities": cities},
                                   input_signature=[tf.TensorSpec([None, None], tf.int64, name="cities")])
        tf.saved_model.save(module, str(path / "saved_model"), signatures={signature.NAME: module.serve})

    other = publish("v2-small", small_network)
    corrupt = publish("v3-corrupt", small_network)
    variables = root / "models" / NAME / corrupt / "saved_model" / "variables" / "variables.data-00000-of-00001"
    data = bytearray(variables.read_bytes())
    data[len(data) // 2] ^= 0x01
    variables.write_bytes(bytes(data))
    wrong = publish("v4-wrong-signature", other_signature)
    return ServingStore(uri=str(root / "models"), good=trained_model.version, other=other, corrupt=corrupt,
                        wrong_signature=wrong)
