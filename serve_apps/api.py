"""HTTP bodies of the destinations API (request and response models, validated by FastAPI with pydantic)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH_REQUESTS = 1024
MAX_TRIP_CITIES = 200  # the model reads the last few; longer bodies are a client bug or abuse


class RecommendRequest(BaseModel):
    """One visitor's trip so far and booking context."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"cities": [8183, 15626, 60902], "booker_country": "Elbonia", "device_class": "mobile", "k": 4}]})

    cities: list[int] = Field(min_length=1, max_length=MAX_TRIP_CITIES,
                              description="city ids of the trip so far, oldest first; unknown ids are allowed")
    booker_country: str = Field(max_length=100)
    device_class: str = Field(max_length=100)
    affiliate_id: int | None = Field(None, ge=0)
    k: int = Field(4, ge=1, le=100, description="how many cities to return")


class RecommendResponse(BaseModel):
    cities: list[int] = Field(description="recommended next cities, best first")
    scores: list[float] = Field(description="their probabilities")
    model_version: str = Field(description="the model version that produced this answer")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[RecommendRequest] = Field(min_length=1, max_length=MAX_BATCH_REQUESTS)


class BatchResponse(BaseModel):
    results: list[RecommendResponse] = Field(description="one result per request, in the same order")


class LoadError(BaseModel):
    version: str
    error: str
    at: dt.datetime


class ModelStatus(BaseModel):
    """What the replica that answered is serving, what it is loading, and what failed to load."""

    model_uri: str | None
    version: str | None
    loaded_at: dt.datetime | None
    load_seconds: float | None = Field(description="fetch + checksum + load + warm-up")
    manifest: dict | None = Field(description="summary: created_at, git_commit, metrics, vocabulary sizes, model")
    loading_version: str | None
    last_load_error: LoadError | None
    max_batch_size: int
    batch_wait_timeout_s: float
