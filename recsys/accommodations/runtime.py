"""The ranking model at run time: :class:`Ranker` calls its published signature (the training job's held-out
evaluation, the benchmark's in-process limit); :class:`AccommodationRuntime` is what a Serve replica or a batch job
holds: the ranker and the version's catalogue, called on candidate lists padded to a few warmed shapes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.accommodations import signature
from recsys.accommodations.baselines import PADDING
from recsys.accommodations.catalogue import CATALOGUE_FILE, Catalogue
from recsys.accommodations.searches import includes_saturday_night
from recsys.columns import in_sorted
from recsys.errors import ModelContractError
from recsys.loaded_model import padded_height
from recsys.manifest import SAVED_MODEL_DIR, Manifest
from recsys.saved_model import ServingSignature

MAX_CANDIDATES = 512
# Candidate lists are padded to the next of these widths (with the batch heights, the shapes warm-up runs); the
# largest city catalogue fits the widest.
CANDIDATE_WIDTHS = (16, 64, 256, MAX_CANDIDATES)
MAX_K = 100
# Padding cells (searches x candidate columns) worth a model call of their own: on CPU a call costs 1.5-3 ms on top
# of its cells, ~1.5 us each (measured on the benchmark's 2-core machine).
MIN_PADDING_SAVED = 2048

_COUNTS = ("nights", "adults", "children", "rooms", "saturday_night")


@dataclass(frozen=True)
class Searches:
    """Search contexts as columns, one value per search: where, who, when and for whom."""

    city_id: Sequence[int]
    booker_country: Sequence[str]
    device_class: Sequence[str]
    checkin: Sequence[dt.date] | np.ndarray  # dates, or numpy datetime64[D]
    nights: Sequence[int]
    adults: Sequence[int]
    children: Sequence[int]
    rooms: Sequence[int]

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping]) -> Searches:
        """From one mapping per search (``checkin`` a date or an ISO string); parties default as the API does."""
        defaults = {"adults": 2, "children": 0, "rooms": 1}
        return cls(**{name: [row.get(name, defaults.get(name)) for row in rows] for name in _FIELDS})

    def __len__(self) -> int:
        return len(self.city_id)

    def context(self) -> dict[str, np.ndarray]:
        """The signature's context inputs: the columns, and whether each stay includes a Saturday night."""
        checkin = np.asarray(self.checkin, dtype="datetime64[D]").astype(np.int64)
        nights = np.asarray(self.nights, dtype=np.int64)
        return {"city_id": np.asarray(self.city_id, dtype=np.int64),
                "booker_country": np.asarray(self.booker_country, dtype=object),
                "device_class": np.asarray(self.device_class, dtype=object), "nights": nights,
                "adults": np.asarray(self.adults, dtype=np.int64),
                "children": np.asarray(self.children, dtype=np.int64),
                "rooms": np.asarray(self.rooms, dtype=np.int64),
                "saturday_night": includes_saturday_night(checkin, nights)}


_FIELDS = tuple(field.name for field in dataclasses.fields(Searches))


class Ranker:
    """The ranking model's signature (checked against :mod:`recsys.accommodations.signature`), called on numpy."""

    def __init__(self, saved_model_dir: Path) -> None:
        self._signature = ServingSignature(saved_model_dir, signature.INPUTS, signature.OUTPUTS)

    def rank(self, context: dict[str, np.ndarray], properties: np.ndarray, prices: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of each row's candidates (0 pads) and their scores; ``context`` holds the signature's
        context inputs, one value per row."""
        out = self._signature(**{name: context[name] for name in ("city_id", "booker_country", "device_class")},
                              **{name: np.asarray(context[name]).astype(np.int32) for name in _COUNTS},
                              properties=properties, prices=prices, k=k)
        return out["properties"], out["scores"]

    def score_shown(self, lists: dict[str, np.ndarray], batch_size: int = 512) -> np.ndarray:
        """The model's score for every property each list showed, (lists, n); padding -inf (for metrics)."""
        width = lists["prop_id"].shape[1]
        scores = np.full(lists["prop_id"].shape, PADDING)
        for start in range(0, len(lists["prop_id"]), batch_size):
            part = slice(start, start + batch_size)
            shown = lists["prop_id"][part]
            ranked, ranked_scores = self.rank({name: lists[name][part] for name in signature.CONTEXT_INPUTS},
                                              shown, lists["price"][part], width)
            same = (shown[:, :, None] == ranked[:, None, :]) & (shown[:, :, None] != 0)
            scores[part] = np.where(shown != 0, (same * ranked_scores[:, None, :]).sum(-1), PADDING)
        return scores


class AccommodationRuntime:
    """The ranking model as serving and batch scoring call it: one search context and candidate list per row in,
    the top ``k`` out; every batch padded to a warmed height and width."""

    def __init__(self, ranker: Ranker, catalogue: Catalogue) -> None:
        self.ranker = ranker
        self.catalogue = catalogue
        self._cities = np.unique(catalogue.city_id)

    @classmethod
    def open(cls, path: Path, manifest: Manifest) -> AccommodationRuntime:
        """The verified copy of a version at ``path``: its SavedModel and the catalogue published beside it."""
        if CATALOGUE_FILE not in manifest.files:
            raise ModelContractError(f"{path}/manifest.json: no {CATALOGUE_FILE} in files; not a ranking model")
        return cls(Ranker(path / SAVED_MODEL_DIR), Catalogue.read(path / CATALOGUE_FILE))

    def city_candidates(self, city_id: int) -> np.ndarray:
        """What is ranked when a caller sends no candidates: the city's catalogue (empty for an unknown city)."""
        return self.catalogue.of_city(city_id)[:MAX_CANDIDATES]

    def unknown(self, city_id: np.ndarray, candidate_ids: np.ndarray,
                candidate_offsets: np.ndarray) -> dict[str, np.ndarray]:
        """Per input, which searches hold a value this version's catalogue lacks (answered through the
        out-of-vocabulary slot): ``city_id``, and ``candidates`` when any candidate is unknown; candidates given
        flat, search ``i``'s at ``candidate_ids[offsets[i]:offsets[i + 1]]``."""
        unknown = np.concatenate([[0], np.cumsum(~in_sorted(self.catalogue.prop_id, candidate_ids))])
        return {"city_id": ~in_sorted(self._cities, city_id),
                "candidates": unknown[candidate_offsets[1:]] > unknown[candidate_offsets[:-1]]}

    def rank(self, searches: Searches, candidates: Sequence[np.ndarray | None],
             prices: Sequence[np.ndarray | None], k: int,
             shapes: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The best ``k`` (or fewer) candidates of each search, best first, and their scores. A search without
        candidates (None) ranks its city's catalogue; a price of 0 or None takes the catalogue's."""
        candidates = [self.city_candidates(int(city)) if ids is None else ids
                      for city, ids in zip(searches.city_id, candidates)]
        prices = [np.zeros(len(ids), np.float32) if p is None else p for ids, p in zip(candidates, prices)]
        context = searches.context()
        widths = _call_widths(np.array([padded_width(len(row)) for row in candidates], dtype=np.int64))
        ids: list = [None] * len(candidates)
        scores: list = [None] * len(candidates)
        for width in np.unique(widths):
            group = np.flatnonzero(widths == width)
            group_ids, group_scores = self._rank_padded({name: values[group] for name, values in context.items()},
                                                        [candidates[i] for i in group], [prices[i] for i in group],
                                                        k, shapes, int(width))
            for row, i in enumerate(group):
                count = min(k, len(candidates[i]))
                ids[i], scores[i] = group_ids[row, :count], group_scores[row, :count]
        return ids, scores

    def _rank_padded(self, context: dict[str, np.ndarray], candidates: Sequence[np.ndarray],
                     prices: Sequence[np.ndarray], k: int, shapes: Sequence[int],
                     width: int) -> tuple[np.ndarray, np.ndarray]:
        rows = len(candidates)
        height = max(padded_height(rows, shapes), rows)
        properties = np.zeros((height, width), dtype=np.int64)
        price = np.zeros((height, width), dtype=np.float32)
        for row, (ids, row_prices) in enumerate(zip(candidates, prices)):
            properties[row, :len(ids)] = ids
            price[row, :len(ids)] = row_prices
        padded = {name: _pad(values, height) for name, values in context.items()}
        ids, scores = self.ranker.rank(padded, properties, price, min(k, width))
        return ids[:rows], scores[:rows]

    def warm_up(self, shapes: Sequence[int]) -> None:
        context = {name: ([""] if spec.dtype.name == "string" else [1]) for name, spec in
                   signature.CONTEXT_INPUTS.items()}
        for height in shapes:
            for width in CANDIDATE_WIDTHS:
                ids = np.ones((height, width), dtype=np.int64)
                self.ranker.rank({name: value * height for name, value in context.items()}, ids,
                                 np.zeros(ids.shape, np.float32), MAX_K)


def _call_widths(widths: np.ndarray) -> np.ndarray:
    """The width each list is ranked at: its own warmed width, unless the padding that saves is too little to pay
    for a model call of its own; then the next wider call's. One big catalogue among 48 searches must not make all of
    them pay for 256 columns ((48, 256) costs 3x (48, 64)), nor should three short lists cost a call of their own."""
    call_widths, distinct = widths.copy(), np.unique(widths)[::-1]
    current = distinct[0] if len(distinct) else 0
    for width in distinct[1:]:
        rows = widths == width
        if rows.sum() * (current - width) >= MIN_PADDING_SAVED:
            current = width
        call_widths[rows] = current
    return call_widths


def padded_width(candidates: int) -> int:
    """The warmed width a list of ``candidates`` is padded to."""
    for width in CANDIDATE_WIDTHS:
        if candidates <= width:
            return width
    raise ValueError(f"at most {MAX_CANDIDATES} candidates, got {candidates}")


def _pad(values: Sequence, height: int) -> np.ndarray:
    values = np.asarray(values)
    filler = "" if values.dtype.kind in "USO" else 0
    return np.concatenate([values, np.full(height - len(values), filler, dtype=values.dtype)])
