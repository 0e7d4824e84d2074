"""Settings every model deployment takes, whatever the model.

:class:`ModelSettings` is a deployment's ``user_config``: Serve hands it to ``reconfigure`` on start and on every
change (``serve deploy``, a RayService ``serveConfigV2`` edit), so the model version and the batching knobs change
without restarting replicas. :class:`ReplicaOptions` are the application's ``args``: fixed for a replica's life.
:class:`IngressOptions` is the part of them every application has, model or not.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recsys.artifact_store import LATEST
from recsys.loaded_model import LoadOptions, split_model_uri
from recsys.manifest import check_name

# What every autoscaled deployment names as autoscaling_config.policy.policy_function (serve_apps.core.demand).
AUTOSCALING_POLICY = "serve_apps.core.demand:demand_policy"


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str = Field(min_length=1, description="model store URI and model name, e.g. hdfs://nn:8020/models/destinations")
    model_version: str = Field(LATEST, description="a published version, or 'latest' (the store's LATEST file, "
                                                   "re-read every latest_poll_s)")
    latest_poll_s: float = Field(30.0, gt=0, le=86_400, description="how often replicas re-read LATEST (and retry a "
                                                                     "version that failed to load for a passing reason)")
    max_batch_size: int = Field(1024, ge=1, le=1024, description="rows per model call")
    batch_wait_timeout_s: float = Field(0.001, ge=0, le=1, description="how long a batch waits to fill")
    max_response_shift_psi: float | None = Field(
        None, gt=0, description="refuse a new version whose top-1 score PSI against the serving version, on recent "
                                "requests, is above this (unset: measured and reported only; see response_shift)")
    min_response_overlap: float | None = Field(
        None, ge=0, le=1, description="refuse a new version whose answers share a smaller mean part of their items "
                                      "with the serving version's, on recent requests")

    @field_validator("model_uri")
    @classmethod
    def _has_model_name(cls, value: str) -> str:
        check_name("model name (last segment of model_uri)", split_model_uri(value)[1])
        return value.rstrip("/")

    @field_validator("model_version")
    @classmethod
    def _version(cls, value: str) -> str:
        return value if value == LATEST else check_name("model_version", value)

    @property
    def store_uri(self) -> str:
        return split_model_uri(self.model_uri)[0]

    @property
    def model_name(self) -> str:
        return split_model_uri(self.model_uri)[1]


class IngressOptions(BaseModel):
    """What every application's ``args`` say about its HTTP edge (HAProxy reads it too:
    :func:`serve_apps.core.ingress.haproxy_limits`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    queue_budget_ms: int = Field(100, ge=1, le=60_000, description="longest a request may wait before a replica "
                                                                    "takes it up; later: 503 with Retry-After")
    inflight_target_ms: int = Field(25, ge=0, le=30_000,
                                    description="how long a request should be in a replica: while HAProxy turns "
                                                "requests away it sends each replica as many at once as it finishes "
                                                "in this time (at most max_ongoing_requests), and queues a request "
                                                "only if it can be taken up within queue_budget_ms minus twice this; "
                                                "0: fixed limits")
    metrics: bool = Field(True, description="export the application metrics (serve_apps.core.metrics); off only "
                                            "to measure what they cost")

    @model_validator(mode="after")
    def _target_within_budget(self) -> IngressOptions:
        if 2 * self.inflight_target_ms >= self.queue_budget_ms:
            raise ValueError(f"inflight_target_ms: must be below half of queue_budget_ms ({self.queue_budget_ms}), "
                             f"got {self.inflight_target_ms}; a queued request would have no time left to wait")
        return self


class ReplicaOptions(LoadOptions, IngressOptions):
    """A model application's ``args`` in a Serve config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_memory_mib: int | None = Field(None, gt=0, description="memory of one GPU; probed with nvidia-smi if unset")
    gpu_context_mib: int = Field(512, ge=0, description="per-process CUDA overhead outside TensorFlow's allocator")


class TripsOptions(IngressOptions):
    """The trips application's ``args`` (:mod:`serve_apps.trips`): where the model deployments it composes are and
    how long each call may take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    destinations_app: str = "destinations"
    destinations_deployment: str = "Destinations"
    accommodations_app: str = "accommodations"
    accommodations_deployment: str = "Accommodations"
    destinations_timeout_ms: int = Field(500, ge=1, le=60_000, description="longer: 503 with Retry-After")
    accommodations_timeout_ms: int = Field(250, ge=1, le=60_000,
                                           description="longer: destinations answered without properties")
