"""What a precompute run writes: the prediction tables' schemas (the contract README documents), the Parquet file
names, and the count of what was written, read back from the files themselves.

pyarrow only: Ray Data's write tasks unpickle :class:`PartFiles`, and importing TensorFlow there cost seconds each.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data.datasource import FilenameProvider

from recsys import filesystem

# Rows that held a value the model does not know, per input: counted in the manifest, never dropped.
UNKNOWN_COLUMNS = {"cities": "unknown_cities", "booker_country": "unknown_booker_country",
                   "device_class": "unknown_device_class", "affiliate_id": "unknown_affiliate"}
UNKNOWN_CITY_PROPERTIES = "unknown_city_properties"  # trip answers: chosen cities without a catalogue

DESTINATION_SCHEMA = pa.schema([
    pa.field("user_id", pa.int64()),
    pa.field("utrip_id", pa.string()),
    pa.field("next_cities", pa.list_(pa.int64())),  # best first
    pa.field("scores", pa.list_(pa.float32())),
    pa.field("model_version", pa.string()),
    *(pa.field(column, pa.bool_()) for column in UNKNOWN_COLUMNS.values()),
])

TRIP_ANSWER_SCHEMA = pa.schema([
    pa.field("user_id", pa.int64()),
    pa.field("utrip_id", pa.string()),
    pa.field("next_cities", pa.list_(pa.int64())),
    pa.field("scores", pa.list_(pa.float32())),
    pa.field("properties", pa.list_(pa.list_(pa.int64()))),  # per next city; empty past cities_with_properties
    pa.field("property_scores", pa.list_(pa.list_(pa.float32()))),
    pa.field("checkin", pa.date32()),
    pa.field("nights", pa.int32()),
    pa.field("destinations_version", pa.string()),
    pa.field("accommodations_version", pa.string()),
    *(pa.field(column, pa.bool_()) for column in UNKNOWN_COLUMNS.values()),
    pa.field(UNKNOWN_CITY_PROPERTIES, pa.bool_()),
])


def unknown_flags(predictions: str) -> list[str]:
    """The out-of-vocabulary flag columns of a prediction set's table."""
    return [*UNKNOWN_COLUMNS.values()] + ([UNKNOWN_CITY_PROPERTIES] if predictions == "trips" else [])


@dataclass(frozen=True)
class Written:
    rows: int
    unknown: dict[str, int]


class PartFiles(FilenameProvider):
    """``part-<task>-<file>.parquet``, as Hive and Spark name theirs."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:05d}-{{i}}.parquet"  # {i}: the task's n-th file (max_rows_per_file)


def count_written(staging_uri: str, flags: list[str]) -> Written:
    """Rows written under ``staging_uri`` and, per flag column, rows flagged."""
    fs, root = filesystem.resolve(staging_uri)
    rows, unknown = 0, dict.fromkeys(flags, 0)
    for path in sorted(p for p in fs.find(root) if p.endswith(".parquet")):
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=flags)
        rows += table.num_rows
        for flag in flags:
            unknown[flag] += pc.sum(table[flag]).as_py() or 0
    return Written(rows=rows, unknown=unknown)
