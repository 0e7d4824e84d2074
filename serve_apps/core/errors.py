"""Errors of the serving layer and the one table that maps each to an HTTP status.

4xx is the caller's fault, 503 means not ready or overloaded (retry later or elsewhere: the answer carries
``Retry-After``), 500 is kept for faults of the server itself. :func:`install` registers the handlers on an app, so
every model answers errors alike: 400 and 422 in FastAPI's validation-error shape (``detail`` is a list naming
the field), everything else as ``{"detail": "..."}``.
"""

from __future__ import annotations

import http

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

RETRY_AFTER_S = 1


class ServingError(Exception):
    """Base of the errors the ingress answers on purpose."""

    @property
    def reason(self) -> str:
        """The error's name in metrics (``recsys_requests_refused{reason}``): ``Overloaded`` -> ``overloaded``."""
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in type(self).__name__).lstrip("_")


class ModelNotReady(ServingError):
    """No model is loaded on this replica (yet)."""


class Overloaded(ServingError):
    """The request waited, or would wait, longer than the replica's queueing budget."""


class UnsupportedMediaType(ServingError):
    """The body's Content-Type is not one the endpoint reads."""


class BodyTooLarge(ServingError):
    """The body is larger than the replica accepts."""


class MalformedBody(ServingError):
    """The body is not what its Content-Type says (not JSON text, not an Arrow stream)."""


class InvalidBody(ServingError):
    """The body is readable but breaks the request type's rules: ``loc`` names the field (and row)."""

    def __init__(self, message: str, loc: tuple = ("body",), kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc, self.kind = loc, kind


class InvalidRows(ServingError):
    """The request passed validation but its rows could not be turned into model inputs: the caller's data is at
    fault, and only that caller gets the error (see :class:`serve_apps.core.lane.InferenceLane`)."""


class ModelCallFailed(ServingError):
    """The model itself failed on rows that were valid model inputs."""


class DependencyUnavailable(ServingError):
    """A deployment this one composes did not answer in time, or failed: retry later."""


STATUS_CODES: dict[type[Exception], int] = {
    ModelNotReady: 503,
    Overloaded: 503,
    UnsupportedMediaType: 415,
    BodyTooLarge: 413,
    MalformedBody: 400,
    InvalidBody: 422,
    InvalidRows: 422,
    ModelCallFailed: 500,
    DependencyUnavailable: 503,
}


def status_code(error: Exception) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return 500


class ErrorBody(BaseModel):
    """The body of every error answer but 400 and 422."""

    detail: str


def error_response(error: ServingError, app: FastAPI | None = None) -> JSONResponse:
    """The answer to ``error``; counted in ``app``'s metrics (:mod:`serve_apps.core.metrics`) if it has them."""
    code = status_code(error)
    _count(app, code, error.reason)
    if isinstance(error, InvalidBody):
        return _validation_response(422, [{"loc": list(error.loc), "msg": str(error), "type": error.kind}])
    if code in (400, 422):
        kind = "malformed_body" if code == 400 else "invalid_rows"
        return _validation_response(code, [{"loc": ["body"], "msg": str(error), "type": kind}])
    headers = {"Retry-After": str(RETRY_AFTER_S)} if code == 503 else None
    return JSONResponse({"detail": str(error)}, status_code=code, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into its status and body."""

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, error: ServingError) -> JSONResponse:
        return error_response(error, request.app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [{key: item[key] for key in ("loc", "msg", "type") if key in item} for item in error.errors()]
        # A body that is not JSON at all is malformed (400); JSON that breaks the schema is unprocessable (422).
        malformed = any(item["type"] == "json_invalid" for item in problems)
        _count(request.app, 400 if malformed else 422, "malformed_body" if malformed else "invalid_body")
        return _validation_response(400 if malformed else 422, problems)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        _count(request.app, error.status_code, "malformed_body" if error.status_code == 400 else
               http.HTTPStatus(error.status_code).name.lower())
        if error.status_code == 400:  # FastAPI's "error parsing the body": bytes that are not UTF-8 text
            return _validation_response(400, [{"loc": ["body"], "msg": "body is not valid UTF-8 JSON text",
                                               "type": "json_invalid"}])
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)


def _count(app: FastAPI | None, code: int, reason: str) -> None:
    metrics = getattr(app.state, "metrics", None) if app is not None else None
    if metrics is not None:
        metrics.refused(code, reason)


def _validation_response(code: int, problems: list[dict]) -> JSONResponse:
    # Never echo the input back: it may be binary or huge, and it is the caller's own anyway.
    return JSONResponse({"detail": [{"loc": [str(p) if not isinstance(p, int) else p for p in item["loc"]],
                                     "msg": str(item["msg"]), "type": item["type"]} for item in problems]},
                        status_code=code)


def documented_responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for the error statuses a route can answer (422 FastAPI documents itself)."""
    descriptions = {
        400: "malformed body: not JSON text (or not an Arrow IPC stream, where one is accepted)",
        413: "body larger than the replica accepts",
        415: "unsupported Content-Type",
        500: "a fault of the server",
        503: "no model loaded yet, overloaded, or a model it needs unavailable; retry after the Retry-After "
             "header's seconds",
    }
    responses: dict[int | str, dict] = {}
    for code in codes:
        if code == 400:
            responses[400] = {"description": descriptions[400],
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}
        else:
            responses[code] = {"description": descriptions[code], "model": ErrorBody}
        if code == 503:
            responses[503]["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                                         "schema": {"type": "integer"}}}
    return responses
