"""The KubeRay custom resources, described once: group, version, kind, plural (all namespaced)."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "ray.io"
VERSION = "v1"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    max_name_length: int  # the operator appends suffixes to names (validation.go, MaxRay*NameLength)
    group: str = GROUP
    version: str = VERSION

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


RAY_CLUSTER = Kind("RayCluster", "rayclusters", max_name_length=53)
RAY_SERVICE = Kind("RayService", "rayservices", max_name_length=47)
RAY_JOB = Kind("RayJob", "rayjobs", max_name_length=47)
KINDS = {k.kind: k for k in (RAY_CLUSTER, RAY_SERVICE, RAY_JOB)}


def kuberay_kind(obj: dict) -> Kind | None:
    """The KubeRay kind of a manifest, or None for any other object."""
    kind = KINDS.get(obj.get("kind", ""))
    return kind if kind and obj.get("apiVersion") == kind.api_version else None
