"""What a replica reports about its model (``GET /<model>/model``): the same body for every model."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from serve_apps.core.response_shift import ResponseShift


class LoadError(BaseModel):
    version: str
    error: str
    at: dt.datetime


class ModelStatus(BaseModel):
    """What the replica that answered is serving, what it is loading, and what failed to load."""

    replica: str = Field(description="the Serve replica that answered")
    model_uri: str | None
    model_version_setting: str | None = Field(description="the user_config's model_version: a version or 'latest'")
    target_version: str | None = Field(description="the version that setting named at the last check")
    version: str | None = Field(description="the version this replica serves")
    loaded_at: dt.datetime | None
    load_seconds: float | None = Field(description="fetch + checksum + load + warm-up")
    manifest: dict | None = Field(description="summary: created_at, git_commit, metrics, vocabulary sizes, model")
    loading_version: str | None
    last_load_error: LoadError | None
    max_batch_size: int
    batch_wait_timeout_s: float
    queue_budget_ms: int = Field(description="longest a request may wait before the model takes it up")
    response_shift: ResponseShift | None = Field(description="the last version loaded against the one serving "
                                                             "then, on the same recent requests")
