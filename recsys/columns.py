"""Arrow columns to the numpy arrays the models take, and the models' numpy answers back to Arrow columns, without
a Python loop over rows: for every caller that holds its rows as columns (batch scoring on Ray Data, Arrow request
bodies on the serving core)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def trip_matrix(trips: pa.ChunkedArray | pa.ListArray, width: int) -> np.ndarray:
    """A list column of trips as the (rows, width) matrix the destination model reads: each trip's last ``width``
    cities, left-aligned and padded with 0 (as :func:`recsys.destinations.runtime.pad_trips`)."""
    trips = _one_chunk(trips)
    # A sliced list array keeps its parent's values: offsets index into them as they are.
    offsets = trips.offsets.to_numpy().astype(np.int64)
    values = trips.values.to_numpy().astype(np.int64, copy=False)
    ends = offsets[1:]
    starts = np.maximum(offsets[:-1], ends - width)
    positions = starts[:, None] + np.arange(width)
    inside = positions < ends[:, None]
    if len(values) == 0:
        return np.zeros((len(ends), width), dtype=np.int64)
    return np.where(inside, values[np.minimum(positions, len(values) - 1)], 0)


def list_column(matrix: np.ndarray, value_type: pa.DataType, lengths: np.ndarray | None = None) -> pa.ListArray:
    """A (rows, width) matrix as a list column: every row whole, or row ``i``'s first ``lengths[i]`` values."""
    rows, width = matrix.shape
    if lengths is None:
        offsets = np.arange(0, rows * width + 1, width, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.reshape(-1), type=value_type))
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), width)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    keep = np.arange(width) < lengths[:, None]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix[keep], type=value_type))


def string_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A string column as the object array the models take, nulls as "" (out of vocabulary). Through a dictionary:
    a column of a few distinct values (countries, devices) becomes that many Python strings, not one per row."""
    encoded = _one_chunk(pc.dictionary_encode(pc.fill_null(column, "")))
    words = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return words[encoded.indices.to_numpy(zero_copy_only=False)]


def _one_chunk(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def in_sorted(known: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in ``known`` (sorted ascending): a binary search, several times cheaper than
    ``np.isin`` for the few thousand values of a serving batch against tens of thousands known."""
    if not len(known):
        return np.zeros(np.shape(values), dtype=bool)
    return known[np.minimum(np.searchsorted(known, values), len(known) - 1)] == values
