"""Errors of the cluster tooling; every Kubernetes API failure becomes one :class:`KubeApiError`."""

from __future__ import annotations

import json


class ClusterError(Exception):
    """Base of the errors the cluster CLI reports as one line."""


class ManifestInvalid(ClusterError):
    """Rendered manifests failed validation; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


class KubeApiError(ClusterError):
    """The API server refused a request; the message is the server's own (with the field, for 422)."""

    def __init__(self, status: int, reason: str, message: str, action: str) -> None:
        super().__init__(f"{action}: {status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message

    @classmethod
    def from_api_exception(cls, err, action: str) -> KubeApiError:
        """From ``kubernetes.client.ApiException``, reading the ``Status`` object the server sent back."""
        reason, message = err.reason or "", ""
        try:
            body = json.loads(err.body or "{}")
        except (TypeError, ValueError):
            body = {}
        if isinstance(body, dict):
            reason = body.get("reason") or reason
            message = body.get("message", "")
            causes = (body.get("details") or {}).get("causes") or []
            fields = [f"{c.get('field')}: {c.get('message')}" for c in causes if c.get("field")]
            if fields and not message:
                message = "; ".join(fields)
        return cls(int(err.status or 0), reason, message or str(err.body or "").strip(), action)


class WaitTimeout(ClusterError):
    """A resource did not reach the awaited state in time."""
