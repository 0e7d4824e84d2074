"""What the service answers, typed. Requests are plain mappings (the service's OpenAPI document describes them;
:class:`Trip` and :class:`Search` name their fields for type checkers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict


class Trip(TypedDict):
    """A trip so far, for the destination model (``/destinations/recommend``)."""

    cities: list[int]
    booker_country: str
    device_class: str
    affiliate_id: NotRequired[int | None]
    k: NotRequired[int]


class Candidate(TypedDict):
    property_id: int
    price: NotRequired[float | None]


class Search(TypedDict):
    """A search, for the ranking model (``/accommodations/rank``); ``checkin`` as YYYY-MM-DD."""

    city_id: int
    booker_country: str
    device_class: str
    checkin: str
    nights: int
    adults: NotRequired[int]
    children: NotRequired[int]
    rooms: NotRequired[int]
    candidates: NotRequired[list[Candidate] | None]
    k: NotRequired[int]


@dataclass(frozen=True)
class Destinations:
    cities: list[int]
    scores: list[float]
    model_version: str


@dataclass(frozen=True)
class Ranking:
    properties: list[int]
    scores: list[float]
    model_version: str
