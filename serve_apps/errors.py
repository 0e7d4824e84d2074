"""Errors of the serving layer and the one table that maps every error to an HTTP status.

4xx is the caller's fault (FastAPI answers malformed bodies with 422 itself), 503 means not ready or overloaded
(retry elsewhere or later), 500 is kept for bugs.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base of the errors the ingress answers on purpose."""


class ModelNotReady(ServingError):
    """No model is loaded on this replica (yet)."""


STATUS_CODES: dict[type[Exception], int] = {
    ModelNotReady: 503,
}


def status_code(error: Exception) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return 500
