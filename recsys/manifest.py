"""The artifact contract: what ``<store>/<model_name>/<version>/manifest.json`` says about a published model.

Serving trusts nothing else: it resolves a version, checks every file against ``files`` and loads the
SavedModel through the signature recorded here. Training writes it; the benchmark and the cluster tooling read it.
"""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MANIFEST_FILE = "manifest.json"
# A prediction run's manifest sits beside its Parquet files: the leading underscore makes pyarrow, pandas, Spark and
# Hive skip it when they read the run's directory, as they skip _SUCCESS.
PREDICTION_MANIFEST_FILE = "_manifest.json"
SAVED_MODEL_DIR = "saved_model"
VOCABULARY_FILE = "vocabulary.json"


def check_name(kind: str, value: str) -> str:
    """Model names and versions become path segments: keep them to a safe alphabet (no '/', no '..')."""
    if not NAME_PATTERN.match(value) or value in (".", ".."):
        raise ValueError(f"{kind} must match {NAME_PATTERN.pattern}, got {value!r}")
    return value


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: str
    shape: list[int | None]


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


class Metrics(BaseModel):
    """Held-out metrics of the job that trained a version, next to its baselines' on the same data. Each model
    records its own fields (``recsys.<model>.metrics``); every model has ``baselines``, by name."""

    model_config = ConfigDict(extra="allow", frozen=True)

    baselines: dict[str, float | dict[str, float]]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = 1
    name: str
    version: str
    created_at: dt.datetime
    git_commit: str | None = None
    frameworks: dict[str, str]
    signature: Signature
    vocabulary_sizes: dict[str, int]
    model: dict[str, object] = Field(description="architecture, as the model's own config type records it")
    training: dict[str, object] = Field(description="hyper-parameters, workers, example counts, timings")
    metrics: SerializeAsAny[Metrics] = Field(description="the model's own metrics type, serialized whole")
    files: dict[str, FileEntry] = Field(description="every file of the version but this manifest, by relative path")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name("name", value)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return check_name("version", value)

    @field_validator("files")
    @classmethod
    def _relative_paths(cls, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for path in files:
            if path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"file paths must be relative and inside the version, got {path!r}")
        return files


class PredictionInput(BaseModel):
    """What a prediction run read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str
    files: int = Field(ge=0)
    rows: int = Field(ge=0, description="rows of the input files")


class PredictionManifest(BaseModel):
    """``<store>/predictions/<set>/<run>/_manifest.json``: what a precompute run scored, with which model versions,
    and every file it wrote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = 1
    name: str = Field(description="the prediction set, e.g. destinations or trips")
    run: str
    created_at: dt.datetime
    git_commit: str | None = None
    models: dict[str, str] = Field(description="the version of each model that scored every row, by model")
    input: PredictionInput
    rows: int = Field(ge=0, description="rows written: one per scored trip")
    parameters: dict[str, object] = Field(description="k and the job's other answer settings")
    unknown: dict[str, int] = Field(description="rows scored with an out-of-vocabulary value, per input")
    seconds: float = Field(ge=0, description="wall time of the run until publish")
    files: dict[str, FileEntry] = Field(description="every file of the run but this manifest, by relative path")

    @field_validator("name", "run")
    @classmethod
    def _names(cls, value: str, info) -> str:
        return check_name(info.field_name, value)
