"""Trip data to training examples with Ray Data: read Parquet from any store, group by trip, split.

The driver first checks the data path itself (exists, holds Parquet, every file has the trip schema) so that a
wrong path fails in a second with the file named, not minutes later inside a Ray task. Examples are built by
hash-partitioning reservations on ``utrip_id`` (every trip lands whole in one block) and mapping each block
with vectorised numpy, then materialised once: they are small next to the raw data and are read every epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from recsys import filesystem
from recsys.errors import DataError
from recsys.features import FEATURES, LABEL, TEST, TRAIN, VALIDATION, examples_from_trips
from recsys.trips import TRIP_SCHEMA, check_trip_schema

log = logging.getLogger(__name__)

_ROWS_PER_BLOCK = 250_000
# Columns the driver keeps of the training examples for the vocabulary and the baselines.
_DRIVER_COLUMNS = ["history", LABEL, "step", "booker_country", "device_class", "affiliate_id"]


@dataclass(frozen=True)
class TripFiles:
    uri: str
    paths: list[str]
    reservations: int


@dataclass
class TrainingData:
    """Examples ready for training: Ray datasets for the workers, numpy columns for the driver."""

    train: ray.data.Dataset
    validation: ray.data.Dataset
    train_columns: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    reservations: int

    @property
    def counts(self) -> dict[str, int]:
        return {"reservations": self.reservations, "train_examples": len(self.train_columns[LABEL]),
                "validation_trips": self.validation.count(), "test_trips": len(self.test[LABEL])}


def find_trip_files(uri: str) -> TripFiles:
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
    reservations = 0
    for path in paths:
        try:
            with fs.open(path, "rb") as f:
                metadata = pq.ParquetFile(f).metadata
        except (OSError, pa.ArrowInvalid) as err:
            raise DataError(f"{fs.unstrip_protocol(path)}: not a readable Parquet file: {err}") from err
        check_trip_schema(metadata.schema.to_arrow_schema(), fs.unstrip_protocol(path))
        reservations += metadata.num_rows
    if reservations == 0:
        raise DataError(f"{uri}: the Parquet files hold no reservations")
    return TripFiles(uri=uri, paths=paths, reservations=reservations)


def load_training_data(files: TripFiles, history_length: int) -> TrainingData:
    fs, _ = filesystem.resolve(files.uri)
    trips = ray.data.read_parquet(files.paths, filesystem=filesystem.to_pyarrow(fs), columns=TRIP_SCHEMA.names)
    blocks = max(2, -(-files.reservations // _ROWS_PER_BLOCK))
    examples = (
        trips.repartition(blocks, keys=["utrip_id"])
        .map_batches(examples_from_trips, batch_size=None, batch_format="pyarrow",
                     fn_kwargs={"history_length": history_length})
        .materialize()
    )
    log.info("built examples from %d reservations in %d blocks", files.reservations, blocks)
    model_columns = [*FEATURES, LABEL]
    train = examples.filter(expr=f"split == '{TRAIN}'")
    train_columns = _to_numpy(train.select_columns(_DRIVER_COLUMNS))
    if len(train_columns[LABEL]) == 0:
        raise DataError(f"{files.uri}: no training examples (trips need at least two reservations)")
    # Materialised so that feeding the workers runs no Ray Data tasks competing with them for CPUs.
    return TrainingData(
        train=train.select_columns(model_columns).materialize(),
        validation=examples.filter(expr=f"split == '{VALIDATION}' and is_last").select_columns(model_columns)
        .materialize(),
        train_columns=train_columns,
        test=_to_numpy(examples.filter(expr=f"split == '{TEST}' and is_last").select_columns(model_columns)),
        reservations=files.reservations,
    )


def _to_numpy(dataset: ray.data.Dataset) -> dict[str, np.ndarray]:
    batches = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    columns = dataset.columns()
    if not batches:
        return {c: np.zeros(0) for c in columns}
    return {c: np.concatenate([b[c] for b in batches]) for c in columns}
