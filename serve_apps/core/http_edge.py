"""The HTTP edge every application shares, model or composition: one FastAPI app factory, so that each answers
the queueing budget, body limits, media types and errors alike."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from serve_apps.core import errors
from serve_apps.core.deadline import EnforceQueueBudget
from serve_apps.core.media_types import require_media_type


def ingress_api(title: str, description: str, max_body_bytes: int) -> FastAPI:
    """The FastAPI app of an ingress deployment: the queueing budget (503, before anything else), a body size limit
    (413), 415 for bodies it does not read, and the error handlers."""
    api = FastAPI(title=title, version="1", description=description, max_body_size=max_body_bytes,
                  dependencies=[Depends(require_media_type)])
    errors.install(api)
    api.add_middleware(EnforceQueueBudget)
    return api
