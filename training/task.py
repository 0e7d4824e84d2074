"""What a model brings to the training harness (:mod:`training.job`, :mod:`training.train_loop`).

The harness does what every job does: check the config, the data and the store; start Ray; train on Ray Train
workers with checkpoints, resumption and the best-by-validation selection; export; score the published artifact;
publish atomically. A model's :class:`Task` supplies only what is its own: how its rows become examples, what the
driver learns from them before training (vocabularies), its baselines, its network and loss, how examples feed the
network, how the network becomes a SavedModel with its serving signature, and how that SavedModel is scored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tf_keras as keras
from pydantic import BaseModel

from recsys.manifest import Metrics, Signature
from training.config import JobConfig
from recsys.tables import DataFiles
from training.data import TrainingData

C = TypeVar("C", bound=JobConfig)
S = TypeVar("S", bound=BaseModel)


class Task(ABC, Generic[C, S]):
    """One model's part of a training job. Instances must be module-level (Ray ships them to workers by reference)."""

    name: ClassVar[str]  # the model's name, and its job's: python -m training.<name>
    config_type: ClassVar[type[JobConfig]]
    state_type: ClassVar[type[BaseModel]]  # what the driver learns before training; every worker gets it
    metric: ClassVar[str]  # the Keras metric (higher is better) whose validation value picks the best checkpoint

    @abstractmethod
    def check_schema(self, schema: pa.Schema, source: str) -> None:
        """Raise :class:`recsys.errors.DataError` naming ``source`` and the column if the data is not this model's."""

    @abstractmethod
    def prepare(self, files: DataFiles, config: C) -> TrainingData:
        """Rows to examples with Ray Data, split into train, validation and test."""

    @abstractmethod
    def fit_state(self, data: TrainingData, config: C) -> S:
        """What the network needs from the training examples before it can be built (vocabularies)."""

    @abstractmethod
    def baselines(self, data: TrainingData, config: C) -> dict:
        """Each baseline's held-out metrics, fitted on the training examples and scored on the test examples."""

    @abstractmethod
    def build_network(self, config: C, state: S) -> keras.Model:
        """The Keras network (not compiled)."""

    @abstractmethod
    def compile(self, network: keras.Model, config: C) -> None:
        """Optimizer, loss and metrics, including :attr:`metric`."""

    @abstractmethod
    def examples(self, rows: dict[str, np.ndarray], for_training: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The network's raw inputs and labels from ``rows``; with ``for_training`` False, as the network will be
        used."""

    @abstractmethod
    def encoder(self, state: S) -> Callable[[dict[str, tf.Tensor], tf.Tensor], tuple]:
        """Maps a batch of raw ``(features, labels)`` to what the network reads (runs in ``tf.data``)."""

    def dataset(self, rows: dict[str, np.ndarray], config: C, state: S, batch_size: int,
                for_training: bool) -> tf.data.Dataset:
        """Examples as encoded ``(features, labels)`` batches of ``batch_size``; for training shuffled
        (``config.hyperparameters.shuffle_buffer``)."""
        dataset = tf.data.Dataset.from_tensor_slices(self.examples(rows, for_training))
        if for_training and config.hyperparameters.shuffle_buffer:
            dataset = dataset.shuffle(config.hyperparameters.shuffle_buffer, seed=config.seed,
                                      reshuffle_each_iteration=True)
        return (dataset.batch(batch_size).map(self.encoder(state), num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    @abstractmethod
    def export(self, network: keras.Model, config: C, state: S, data: TrainingData, out_dir: Path) -> None:
        """The published form under ``out_dir``: ``saved_model/`` with the serving signature, and any files the
        model's runtime needs beside it."""

    @abstractmethod
    def evaluate(self, saved_model_dir: Path, data: TrainingData, config: C, baselines: dict,
                 validation: float) -> Metrics:
        """The published SavedModel scored through its signature on the test examples, beside the baselines."""

    @abstractmethod
    def signature(self) -> Signature:
        """The serving signature's contract, as the manifest records it."""

    @abstractmethod
    def vocabulary_sizes(self, state: S) -> dict[str, int]:
        ...

    def train_examples(self, data: TrainingData) -> int:
        """How many training examples one epoch covers (for examples/s)."""
        return len(next(iter(data.driver.values())))
