"""Training data with Ray Data: find and check the Parquet files of any store, read them, split, collect.

The driver first checks the data path itself (exists, holds Parquet, every file has the model's schema) so that a
wrong path fails in a second with the file named, not minutes later inside a Ray task. Each model's job then
builds its examples with Ray Data (grouping rows by trip or by search) and hands the harness a
:class:`TrainingData`: Ray datasets for the workers, numpy columns for the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from recsys import filesystem
from recsys.errors import DataError

log = logging.getLogger(__name__)

SchemaCheck = Callable[[pa.Schema, str], None]


@dataclass(frozen=True)
class DataFiles:
    uri: str
    paths: list[str]
    rows: int


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


def find_parquet_files(uri: str, check_schema: SchemaCheck) -> DataFiles:
    """The Parquet files under ``uri`` after checking each one's schema; :class:`DataError` says what is wrong."""
    fs, root = filesystem.resolve(uri)
    try:
        if not fs.exists(root):
            raise DataError(f"{uri}: data path does not exist")
        paths = sorted(p for p in fs.find(root) if p.endswith(".parquet")
                       and not any(part.startswith((".", "_")) for part in p[len(root):].split("/")))
    except OSError as err:
        raise DataError(f"{uri}: cannot list data: {err}") from err
    if not paths:
        raise DataError(f"{uri}: no .parquet files under this path")
    rows = 0
    for path in paths:
        try:
            with fs.open(path, "rb") as f:
                metadata = pq.ParquetFile(f).metadata
        except (OSError, pa.ArrowInvalid) as err:
            raise DataError(f"{fs.unstrip_protocol(path)}: not a readable Parquet file: {err}") from err
        check_schema(metadata.schema.to_arrow_schema(), fs.unstrip_protocol(path))
        rows += metadata.num_rows
    if rows == 0:
        raise DataError(f"{uri}: the Parquet files hold no rows")
    return DataFiles(uri=uri, paths=paths, rows=rows)


def read(files: DataFiles, columns: list[str]) -> ray.data.Dataset:
    fs, _ = filesystem.resolve(files.uri)
    return ray.data.read_parquet(files.paths, filesystem=filesystem.to_pyarrow(fs), columns=columns)


def to_numpy(dataset: ray.data.Dataset) -> dict[str, np.ndarray]:
    batches = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    columns = dataset.columns()
    if not batches:
        return {c: np.zeros(0) for c in columns}
    return {c: np.concatenate([b[c] for b in batches]) for c in columns}
