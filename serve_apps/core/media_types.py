"""Bodies under a Content-Type an endpoint does not read are answered 415, naming the types it does.

FastAPI hands a body under any non-JSON type to validation as raw bytes, which then fails in odd ways (a 500 for
binary bodies, when the validation error tried to echo them). :func:`require_media_type` is an app-wide dependency:
it runs after routing (an unknown path or method still gets 404 or 405) and before the body is validated.
"""

from __future__ import annotations

from fastapi import Request

from serve_apps.core.errors import UnsupportedMediaType

JSON = "application/json"
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def accepted_media_types(request: Request) -> frozenset[str]:
    """The types the matched route reads: its ``openapi_extra`` request body content types, else JSON."""
    route = request.scope.get("route")
    content = ((getattr(route, "openapi_extra", None) or {}).get("requestBody") or {}).get("content") or {}
    return frozenset(content) | {JSON} if content else frozenset({JSON})


def media_type(request: Request) -> str:
    """The body's media type, without parameters."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def require_media_type(request: Request) -> None:
    if request.method not in _BODY_METHODS:
        return
    accepted = accepted_media_types(request)
    sent = media_type(request)
    if sent not in accepted:
        raise UnsupportedMediaType(f"Content-Type {sent or '(none)'!r} is not accepted here; "
                                   f"send {' or '.join(sorted(accepted))}")
