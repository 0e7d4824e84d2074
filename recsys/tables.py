"""Checking a table's schema against a data contract, so that a wrong file fails naming its column."""

from __future__ import annotations

import pyarrow as pa

from recsys.errors import DataError


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
