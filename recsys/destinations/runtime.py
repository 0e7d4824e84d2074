"""The destination model at run time: :class:`Predictor` calls its published signature (for the training job's
held-out evaluation and the benchmark's in-process limit); :class:`DestinationRuntime` is what a Serve replica or a
batch job holds: the predictor plus the history width and vocabulary its version records, called on batches padded
to a few warmed heights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from recsys.columns import in_sorted
from recsys.destinations import signature
from recsys.destinations.features import PAD_CITY, Vocabulary
from recsys.errors import ModelContractError
from recsys.loaded_model import padded_height
from recsys.manifest import SAVED_MODEL_DIR, VOCABULARY_FILE, Manifest
from recsys.saved_model import ServingSignature

MAX_K = 100


class ServedArchitecture(BaseModel):
    """What the runtime reads from a manifest's ``model`` section. Required here, although training has defaults:
    a manifest that does not say how wide a trip its network reads cannot be served correctly."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    history_length: int = Field(ge=1, le=64)


class Predictor:
    """The destination model's signature (checked against :mod:`recsys.destinations.signature`), called on numpy."""

    def __init__(self, saved_model_dir: Path) -> None:
        self._signature = ServingSignature(saved_model_dir, signature.INPUTS, signature.OUTPUTS)

    def predict(self, cities: np.ndarray, booker_country: Sequence[str], device_class: Sequence[str],
                affiliate_id: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` city ids and scores for a batch; ``cities`` is (batch, length) padded with 0."""
        out = self._signature(cities=cities, booker_country=booker_country, device_class=device_class,
                              affiliate_id=affiliate_id, k=k)
        return out["cities"], out["scores"]

    def predict_in_batches(self, cities: np.ndarray, booker_country: np.ndarray, device_class: np.ndarray,
                           affiliate_id: np.ndarray, k: int, batch_size: int = 1024) -> np.ndarray:
        """Top-``k`` city ids for many rows (evaluation), ``batch_size`` rows per call."""
        parts = [self.predict(cities[i:i + batch_size], booker_country[i:i + batch_size].tolist(),
                              device_class[i:i + batch_size].tolist(), affiliate_id[i:i + batch_size], k)[0]
                 for i in range(0, len(cities), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


class DestinationRuntime:
    """The destination model as serving and batch scoring call it: raw columns in, top-k out, every batch padded
    to the next warmed height (see :func:`recsys.loaded_model.batch_shapes`) and every trip to the model's width."""

    def __init__(self, predictor: Predictor, history_length: int, vocabulary: Vocabulary) -> None:
        self.predictor = predictor
        self.history_length = history_length
        self.vocabulary = vocabulary
        self._known_cities = np.array(sorted(vocabulary.cities), dtype=np.int64)

    @classmethod
    def open(cls, path: Path, manifest: Manifest) -> DestinationRuntime:
        """The verified copy of a version at ``path``; the manifest says how wide a trip the network reads, the
        version's vocabulary which values it knows."""
        try:
            config = ServedArchitecture.model_validate(manifest.model)
        except pydantic.ValidationError as err:
            problems = "; ".join(f"model.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ModelContractError(f"{path}/manifest.json: {problems}") from err
        predictor = Predictor(path / SAVED_MODEL_DIR)
        if VOCABULARY_FILE not in manifest.files:
            raise ModelContractError(f"{path}/manifest.json: no {VOCABULARY_FILE} in files")
        try:
            vocabulary = Vocabulary.model_validate_json((path / VOCABULARY_FILE).read_bytes())
        except pydantic.ValidationError as err:
            raise ModelContractError(f"{path}/{VOCABULARY_FILE}: not a destination vocabulary: {err}") from err
        return cls(predictor, config.history_length, vocabulary)

    def unknown(self, trips: Sequence[Sequence[int]] | np.ndarray, booker_country: Sequence[str],
                device_class: Sequence[str], affiliate_id: Sequence[int]) -> dict[str, np.ndarray]:
        """Per input, which rows hold a value this version has no embedding for (answered through the
        out-of-vocabulary slot): ``cities`` when any city the model reads is unknown; ``affiliate_id`` 0 is
        "none given", not unknown. ``trips`` as for :meth:`top_k`."""
        cities = self._history(trips)
        unknown_city = (cities != PAD_CITY) & ~in_sorted(self._known_cities, cities)
        affiliates = np.asarray(affiliate_id, dtype=np.int64)
        return {"cities": unknown_city.any(axis=1),
                "booker_country": ~np.isin(np.asarray(booker_country, dtype=object),
                                           np.asarray(self.vocabulary.booker_countries, dtype=object)),
                "device_class": ~np.isin(np.asarray(device_class, dtype=object),
                                         np.asarray(self.vocabulary.device_classes, dtype=object)),
                "affiliate_id": (affiliates != 0) & ~np.isin(affiliates, self.vocabulary.affiliates)}

    def popular_cities(self, n: int) -> np.ndarray:
        """The ``n`` cities most frequent in this version's training data (its vocabulary's order)."""
        return np.asarray(self.vocabulary.cities[:n], dtype=np.int64)

    def top_k(self, trips: Sequence[Sequence[int]] | np.ndarray, booker_country: Sequence[str],
              device_class: Sequence[str], affiliate_id: Sequence[int], k: int,
              shapes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` city ids and scores, one row per trip; ``affiliate_id`` 0 means unknown. ``trips`` may be
        given as the (rows, history_length) matrix :func:`pad_trips` makes."""
        history = self._history(trips)
        rows = len(history)
        padding = max(padded_height(rows, shapes) - rows, 0)
        # A fixed width and a few padded heights: the shapes warm-up ran are the only ones the model sees.
        cities = np.zeros((rows + padding, self.history_length), dtype=np.int64)
        cities[:rows] = history
        affiliates = np.zeros(rows + padding, dtype=np.int64)
        affiliates[:rows] = affiliate_id
        ids, scores = self.predictor.predict(cities, _padded_text(booker_country, padding),
                                             _padded_text(device_class, padding), affiliates, k)
        return ids[:rows], scores[:rows]

    def _history(self, trips: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        if isinstance(trips, np.ndarray) and trips.ndim == 2:
            if trips.shape[1] != self.history_length:
                raise ValueError(f"trip matrix has {trips.shape[1]} columns, the model reads {self.history_length}")
            return trips
        return pad_trips(trips, width=self.history_length)

    def warm_up(self, shapes: Sequence[int]) -> None:
        cities = np.ones((max(shapes), self.history_length), dtype=np.int64)
        for size in shapes:
            self.predictor.predict(cities[:size], [""] * size, [""] * size, np.zeros(size, np.int64), MAX_K)


def pad_trips(trips: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """Trips of different lengths as one (batch, width) matrix, right-padded with 0.

    With ``width`` (the model's ``history_length``) only the last ``width`` cities are kept, which are all the
    model reads, and every batch has the same width; without it the matrix is as wide as the longest trip.
    """
    if width is not None:
        trips = [trip[-width:] for trip in trips]
    else:
        width = max((len(trip) for trip in trips), default=0)
    matrix = np.full((len(trips), max(width, 1)), PAD_CITY, dtype=np.int64)
    for row, trip in enumerate(trips):
        matrix[row, : len(trip)] = trip
    return matrix


def _padded_text(values: Sequence[str], padding: int) -> np.ndarray:
    return np.concatenate([np.asarray(values, dtype=object), np.full(padding, "", dtype=object)])
