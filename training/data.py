"""Training data with Ray Data: read the checked Parquet files of any store (:func:`recsys.tables.find_parquet_files`),
split, collect. Each model's job builds its examples with Ray Data (grouping rows by trip or by search) and hands
the harness a :class:`TrainingData`: Ray datasets for the workers, numpy columns for the driver.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import ray
import ray.data

from recsys import filesystem
from recsys.tables import DataFiles

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Examples ready for training: Ray datasets for the workers (materialised, so feeding them runs no Ray Data
    tasks beside the workers), numpy columns for the driver (``driver``: the training examples it needs for
    vocabularies and baselines; ``test``: the held-out examples the published model is scored on)."""

    train: ray.data.Dataset
    validation: ray.data.Dataset
    driver: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    counts: dict[str, int]


def read(files: DataFiles, columns: list[str]) -> ray.data.Dataset:
    fs, _ = filesystem.resolve(files.uri)
    return ray.data.read_parquet(files.paths, filesystem=filesystem.to_pyarrow(fs), columns=columns)


def to_numpy(dataset: ray.data.Dataset) -> dict[str, np.ndarray]:
    batches = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    columns = dataset.columns()
    if not batches:
        return {c: np.zeros(0) for c in columns}
    return {c: np.concatenate([b[c] for b in batches]) for c in columns}
