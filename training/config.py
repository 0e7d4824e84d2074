"""A training job's settings: one YAML file validated by pydantic, with URI overrides from the environment.

:class:`JobConfig` holds what every job has (where the data, store and checkpoints are, workers, failures); each
model's job subclasses it with its own ``model`` (architecture) and ``hyperparameters`` types.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys import config_file
from recsys.manifest import check_name

# Environment variables that override URIs of the file, so one config serves laptops, CI and clusters.
URI_OVERRIDES = {"DATA_URI": "data_uri", "MODEL_STORE_URI": "store_uri", "CHECKPOINT_URI": "checkpoint_uri"}


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(ge=1, le=1000)
    batch_size: int = Field(512, ge=1, description="global batch size, split evenly across workers")
    learning_rate: float = Field(2e-3, gt=0, le=1)
    shuffle_buffer: int = Field(20_000, ge=0, description="rows in each worker's local shuffle buffer")


class JobConfig(BaseModel):
    """Everything one training run needs. URIs may be local paths, ``file://`` or ``hdfs://``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str
    data_uri: str = Field(min_length=1, description="directory of the training data's Parquet files")
    store_uri: str = Field(min_length=1, description="model store the trained version is published to")
    checkpoint_uri: str = Field(min_length=1, description="Ray Train storage for checkpoints (shared on clusters)")
    seed: int = 0
    num_workers: int = Field(2, ge=1, le=1024)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    max_failures: int = Field(0, ge=0, description="worker-group restarts from the last checkpoint")
    hyperparameters: Hyperparameters

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return check_name("model_name", value)

    @property
    def per_worker_batch_size(self) -> int:
        return max(1, self.hyperparameters.batch_size // self.num_workers)


C = TypeVar("C", bound=JobConfig)


def load_config(path: Path, environ: Mapping[str, str], config_type: type[C]) -> C:
    """Read ``path`` and apply :data:`URI_OVERRIDES` from ``environ``; :class:`ConfigError` names what is wrong."""
    return config_file.load(path, environ, config_type, URI_OVERRIDES)
