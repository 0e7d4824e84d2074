"""Settings of the destinations deployment.

:class:`ModelSettings` is the deployment's ``user_config``: Serve hands it to ``reconfigure`` on start and on every
change (``serve deploy``, a RayService ``serveConfigV2`` edit), so the model version and the batching knobs
change without restarting replicas. :class:`ReplicaOptions` are the application's ``args``: fixed for a
replica's life.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.artifact_store import LATEST
from recsys.manifest import check_name


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str = Field(min_length=1, description="model store URI and model name, e.g. hdfs://nn:8020/models/destinations")
    model_version: str = Field(LATEST, description="a published version, or 'latest' (resolved when a replica loads)")
    max_batch_size: int = Field(1024, ge=1, le=1024, description="rows per model call")
    batch_wait_timeout_s: float = Field(0.001, ge=0, le=1, description="how long a batch waits to fill")

    @field_validator("model_uri")
    @classmethod
    def _has_model_name(cls, value: str) -> str:
        check_name("model name (last segment of model_uri)", value.rstrip("/").rsplit("/", 1)[-1])
        return value.rstrip("/")

    @field_validator("model_version")
    @classmethod
    def _version(cls, value: str) -> str:
        return value if value == LATEST else check_name("model_version", value)

    @property
    def store_uri(self) -> str:
        return self.model_uri.rsplit("/", 1)[0] if "/" in self.model_uri else "."

    @property
    def model_name(self) -> str:
        return self.model_uri.rsplit("/", 1)[-1]


class ReplicaOptions(BaseModel):
    """The application's ``args`` in a Serve config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache_dir: Path = Field(Path(tempfile.gettempdir()) / "recsys-model-cache",
                            description="local copies of fetched versions, reused while their checksums match")
    load_attempts: int = Field(30, ge=1, description="tries to reach an unreachable store before giving up")
    load_backoff_s: float = Field(1.0, gt=0, description="first wait between tries; doubles each time")
    load_max_backoff_s: float = Field(30.0, gt=0)
    gpu_memory_mib: int | None = Field(None, gt=0, description="memory of one GPU; probed with nvidia-smi if unset")
    gpu_context_mib: int = Field(512, ge=0, description="per-process CUDA overhead outside TensorFlow's allocator")
