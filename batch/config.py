"""A precompute job's settings: which answers, from which trips, with which model versions, on what actor pool.

One YAML file (``configs/batch/*.yaml``) validated here; ``INPUT_URI`` and ``MODEL_STORE_URI`` in the environment
override its URIs, as the training jobs' do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recsys import config_file
from recsys.accommodations.runtime import MAX_K as MAX_PROPERTIES
from recsys.artifact_store import LATEST
from recsys.destinations.runtime import MAX_K as MAX_CITIES
from recsys.loaded_model import LoadOptions
from recsys.manifest import check_name

URI_OVERRIDES = {"INPUT_URI": "input_uri", "MODEL_STORE_URI": "store_uri"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoringPool(_Strict):
    """The Ray Data actor pool that scores: each actor holds the models, loaded and warmed once."""

    concurrency: int = Field(1, ge=1, le=4096, description="scoring actors")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per actor (TensorFlow's thread pools get as many)")
    num_gpus: float = Field(0.0, ge=0, le=8, description="GPUs per actor; a fraction shares a card")
    batch_size: int = Field(1024, ge=1, le=8192, description="trips per model call")
    ranking_batch_size: int = Field(64, ge=1, le=1024, description="searches per ranking call (trip answers)")
    gpu_memory_mib: int | None = Field(None, gt=0, description="memory of one GPU; probed with nvidia-smi if unset")
    gpu_context_mib: int = Field(512, ge=0, description="per-process CUDA overhead outside TensorFlow's allocator")


class NextStay(_Strict):
    """The stay a trip answer's properties are ranked for: from the open trip's last check-out, this long, for
    this party (the trips data set records no party)."""

    nights: int = Field(2, ge=1, le=90)
    adults: int = Field(2, ge=1, le=30)
    children: int = Field(0, ge=0, le=30)
    rooms: int = Field(1, ge=1, le=30)


class TripAnswer(_Strict):
    cities_with_properties: int = Field(3, ge=1, le=20, description="how many of the best destinations get "
                                                                     "properties")
    properties_per_city: int = Field(3, ge=1, le=MAX_PROPERTIES)
    stay: NextStay = NextStay()


class PrecomputeConfig(_Strict):
    predictions: Literal["destinations", "trips"] = Field(
        description="destinations: each open trip's next cities; trips: the trip answer (cities and properties)")
    input_uri: str = Field(min_length=1, description="trips to score: Parquet files in the trips schema")
    store_uri: str = Field(min_length=1, description="model store to read models from and publish predictions to")
    models: dict[str, str] = Field(description="model name -> version (or latest), resolved once at the start")
    k: int = Field(10, ge=1, le=MAX_CITIES, description="next cities per trip")
    trip_answer: TripAnswer = TripAnswer()
    scoring: ScoringPool = ScoringPool()
    load: LoadOptions = LoadOptions()
    rows_per_file: int = Field(1_000_000, ge=1, description="most rows in one output file")

    @field_validator("models")
    @classmethod
    def _versions(cls, models: dict[str, str]) -> dict[str, str]:
        for name, version in models.items():
            check_name("model name", name)
            if version != LATEST:
                check_name("version", version)
        return models

    @model_validator(mode="after")
    def _models_of_the_answer(self) -> PrecomputeConfig:
        needed = {"destinations"} if self.predictions == "destinations" else {"destinations", "accommodations"}
        if set(self.models) != needed:
            raise ValueError(f"models: {self.predictions} predictions need exactly {sorted(needed)}, "
                             f"got {sorted(self.models)}")
        if self.predictions == "trips" and self.trip_answer.cities_with_properties > self.k:
            raise ValueError(f"trip_answer.cities_with_properties ({self.trip_answer.cities_with_properties}) "
                             f"exceeds k ({self.k})")
        return self


def load_config(path: Path, environ: Mapping[str, str]) -> PrecomputeConfig:
    return config_file.load(path, environ, PrecomputeConfig, URI_OVERRIDES)
