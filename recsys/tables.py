"""Tables on any store: finding a data set's Parquet files and checking each against its data contract, so that a
wrong path or file fails in a second naming the file and column, not minutes later inside a Ray task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from recsys import filesystem
from recsys.errors import DataError

SchemaCheck = Callable[[pa.Schema, str], None]


@dataclass(frozen=True)
class DataFiles:
    uri: str
    paths: list[str]
    rows: int


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


def check_schema(schema: pa.Schema, expected: pa.Schema, source: str) -> None:
    """Raise :class:`DataError` naming ``source`` and the first column of ``expected`` that ``schema`` lacks or types
    differently. Extra columns are allowed (real exports carry more); integer and float widths and string flavours
    may differ, as Parquet writers differ: the values are what matter."""
    for field in expected:
        index = schema.get_field_index(field.name)
        if index < 0:
            raise DataError(f"{source}: column '{field.name}' is missing; expected columns {expected.names}")
        actual = schema.field(index).type
        if not _compatible(actual, field.type):
            raise DataError(f"{source}: column '{field.name}' has type {actual}, expected {field.type}")


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual == expected:
        return True
    for kind in (pa.types.is_integer, pa.types.is_floating):
        if kind(expected):
            return kind(actual)
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    return False
