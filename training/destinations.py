"""Train the next-destination model with Ray Train and publish it to the model store.

    python -m training.destinations --config configs/train/destinations.yaml
    ray job submit --working-dir . -- python -m training.destinations --config configs/train/destinations.yaml

The model's part of the shared job (:mod:`training.job`): trips become next-city examples (Ray Data groups
reservations by trip), the vocabularies of cities, countries, devices and affiliates are fitted on the training
examples, the popularity and Markov baselines beside them; the network is trained with a softmax over cities and
selected by validation accuracy@4; the published SavedModel is scored through its signature on held-out trips.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray.data
import tensorflow as tf
import tf_keras as keras
from pydantic import BaseModel, ConfigDict, Field

import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads Keras)
from recsys.destinations import signature
from recsys.destinations.baselines import Markov, Popularity, accuracy_at_k
from recsys.destinations.features import FEATURES, LABEL, Vocabulary, examples_from_trips
from recsys.destinations.model import DestinationRecommender, FeatureEncoder, ModelConfig, build_network
from recsys.destinations.runtime import Predictor
from recsys.errors import DataError
from recsys.manifest import VOCABULARY_FILE, Metrics, Signature
from recsys.splits import TEST, TRAIN, VALIDATION
from recsys.trips import TRIP_SCHEMA, check_trip_schema
from training import data, job
from training.config import Hyperparameters, JobConfig
from recsys.tables import DataFiles
from training.data import TrainingData
from training.task import Task

K = 4
_ROWS_PER_BLOCK = 250_000
# Columns the driver keeps of the training examples for the vocabulary and the baselines.
_DRIVER_COLUMNS = ["history", LABEL, "step", "booker_country", "device_class", "affiliate_id"]


class DestinationHyperparameters(Hyperparameters):
    min_city_count: int = Field(2, ge=1, description="rarer cities share the out-of-vocabulary slot")


class DestinationsConfig(JobConfig):
    model_name: str = "destinations"
    model: ModelConfig = ModelConfig()
    hyperparameters: DestinationHyperparameters


class DestinationState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vocabulary: Vocabulary


class DestinationMetrics(Metrics):
    """Held-out accuracy@4 of the model, and of the ``markov`` and ``popularity`` baselines."""

    accuracy_at_4: float = Field(ge=0, le=1)
    baselines: dict[str, float]
    test_trips: int = Field(ge=0)
    validation_accuracy_at_4: float


class DestinationTask(Task[DestinationsConfig, DestinationState]):
    name = "destinations"
    config_type = DestinationsConfig
    state_type = DestinationState
    metric = "accuracy_at_4"

    def check_schema(self, schema: pa.Schema, source: str) -> None:
        check_trip_schema(schema, source)

    def prepare(self, files: DataFiles, config: DestinationsConfig) -> TrainingData:
        # Hash-partitioned by trip, so that every trip lies whole in one block; examples are small next to the raw
        # data and are read every epoch, so they are materialised once.
        blocks = max(2, -(-files.rows // _ROWS_PER_BLOCK))
        examples = (
            data.read(files, TRIP_SCHEMA.names).repartition(blocks, keys=["utrip_id"])
            .map_batches(examples_from_trips, batch_size=None, batch_format="pyarrow",
                         fn_kwargs={"history_length": config.model.history_length})
            .materialize()
        )
        return _split(examples, files)

    def fit_state(self, data: TrainingData, config: DestinationsConfig) -> DestinationState:
        return DestinationState(vocabulary=Vocabulary.fit(data.driver, config.hyperparameters.min_city_count))

    def baselines(self, data: TrainingData, config: DestinationsConfig) -> dict:
        train, test = data.driver, data.test
        markov = Markov(train["history"][:, -1], train[LABEL], K)
        popularity = Popularity(train[LABEL], K)
        return {
            "markov": accuracy_at_k(markov.recommend(test["history"][:, -1]), test[LABEL]),
            "popularity": accuracy_at_k(popularity.recommend(len(test[LABEL])), test[LABEL]),
        }

    def build_network(self, config: DestinationsConfig, state: DestinationState) -> keras.Model:
        return build_network(config.model, state.vocabulary.sizes())

    def compile(self, network: keras.Model, config: DestinationsConfig) -> None:
        network.compile(
            optimizer=keras.optimizers.Adam(config.hyperparameters.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=K, name=self.metric)],
        )

    def examples(self, rows: dict[str, np.ndarray], for_training: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {name: rows[name] for name in FEATURES}, rows[LABEL]

    def encoder(self, state: DestinationState) -> Callable[[dict[str, tf.Tensor], tf.Tensor], tuple]:
        encoder = FeatureEncoder(state.vocabulary)
        return lambda features, label: (encoder(features), encoder.city_index(label))

    def export(self, network: keras.Model, config: DestinationsConfig, state: DestinationState, data: TrainingData,
               out_dir: Path) -> None:
        DestinationRecommender(network, state.vocabulary, config.model).save(str(out_dir / "saved_model"))
        # The ids and values the model knows, most frequent first (for clients and example requests).
        (out_dir / VOCABULARY_FILE).write_text(state.vocabulary.model_dump_json(indent=1))

    def evaluate(self, saved_model_dir: Path, data: TrainingData, config: DestinationsConfig, baselines: dict,
                 validation: float) -> Metrics:
        test = data.test
        top = Predictor(saved_model_dir).predict_in_batches(test["history"], test["booker_country"],
                                                            test["device_class"], test["affiliate_id"], K)
        return DestinationMetrics(accuracy_at_4=accuracy_at_k(top, test[LABEL]), baselines=baselines,
                                  test_trips=len(test[LABEL]), validation_accuracy_at_4=validation)

    def signature(self) -> Signature:
        return signature.describe()

    def vocabulary_sizes(self, state: DestinationState) -> dict[str, int]:
        return state.vocabulary.sizes()


def _split(examples: ray.data.Dataset, files: DataFiles) -> TrainingData:
    model_columns = [*FEATURES, LABEL]
    train = examples.filter(expr=f"split == '{TRAIN}'")
    driver = data.to_numpy(train.select_columns(_DRIVER_COLUMNS))
    if len(driver[LABEL]) == 0:
        raise DataError(f"{files.uri}: no training examples (trips need at least two reservations)")
    validation = examples.filter(expr=f"split == '{VALIDATION}' and is_last").select_columns(model_columns) \
        .materialize()
    test = data.to_numpy(examples.filter(expr=f"split == '{TEST}' and is_last").select_columns(model_columns))
    return TrainingData(
        train=train.select_columns(model_columns).materialize(), validation=validation, driver=driver, test=test,
        counts={"reservations": files.rows, "train_examples": len(driver[LABEL]),
                "validation_trips": validation.count(), "test_trips": len(test[LABEL])})


TASK = DestinationTask()

if __name__ == "__main__":
    # The task of the importable module, not of __main__: Ray ships it to the workers by reference.
    from training.destinations import TASK as task
    sys.exit(job.main(task))
