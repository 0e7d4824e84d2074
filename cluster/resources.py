"""The custom resources the manifests hold, described once: group, version, kind, plural (all namespaced): KubeRay's,
and the Prometheus Operator's PodMonitor."""

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
# Validation.go-style name limits do not apply: the operator keeps the name as it is.
POD_MONITOR = Kind("PodMonitor", "podmonitors", max_name_length=253, group="monitoring.coreos.com")
CUSTOM_KINDS = {**KINDS, POD_MONITOR.kind: POD_MONITOR}


def kuberay_kind(obj: dict) -> Kind | None:
    """The KubeRay kind of a manifest, or None for any other object."""
    kind = KINDS.get(obj.get("kind", ""))
    return kind if kind and obj.get("apiVersion") == kind.api_version else None


def custom_kind(obj: dict) -> Kind | None:
    """The custom resource kind of a manifest (KubeRay's or PodMonitor), or None for a built-in object."""
    kind = CUSTOM_KINDS.get(obj.get("kind", ""))
    return kind if kind and obj.get("apiVersion") == kind.api_version else None
