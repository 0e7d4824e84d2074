"""Train / validation / test by a stable hash of a key (a trip, a search), so that a trip or a search never
straddles two splits and the same data always splits the same way, in any process, on any machine."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

TRAIN, VALIDATION, TEST = "train", "validation", "test"
# Per-mille of keys held out for validation (model selection) and test (the reported metrics).
_TEST_PERMILLE, _VALIDATION_PERMILLE = 100, 50


def split_of(keys: Iterable[object]) -> np.ndarray:
    """Which split each key belongs to (its decimal text hashed with CRC-32)."""
    buckets = np.fromiter((zlib.crc32(str(key).encode()) % 1000 for key in keys), dtype=np.int64)
    return np.where(buckets < _TEST_PERMILLE, TEST,
                    np.where(buckets < _TEST_PERMILLE + _VALIDATION_PERMILLE, VALIDATION, TRAIN)).astype(object)
