"""A typed KubeRay client over the official ``kubernetes`` client.

KubeRay resources go through ``CustomObjectsApi`` (group ``ray.io``, version ``v1``); the few built-in kinds the
manifests hold go through their typed APIs. Writes are server-side apply (``application/apply-patch+yaml`` with a
field manager and strict field validation), so ``deploy`` is idempotent; it forces ownership of the fields it sets
(``force: true``), as a deploy tool that is the source of truth for them should, taking them over from any other
manager.
Every API failure surfaces as one :class:`~cluster.errors.KubeApiError` line carrying the server's message.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from typing import Literal, TypeVar

from kubernetes import client, config, watch

from cluster.errors import ClusterError, KubeApiError, WaitTimeout
from cluster.resources import CUSTOM_KINDS, Kind
from cluster.status import RayClusterStatus, RayJobStatus, RayServiceStatus

APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "travel-recsys"
T = TypeVar("T")
Deletion = Literal["deleted", "already being deleted", "not there"]
STATUS_TYPES = {"RayService": RayServiceStatus, "RayJob": RayJobStatus, "RayCluster": RayClusterStatus}


class KubeRayClient:
    def __init__(self, api_client: client.ApiClient, field_manager: str = FIELD_MANAGER) -> None:
        self._api = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._networking = client.NetworkingV1Api(api_client)
        self._field_manager = field_manager

    @property
    def api_client(self) -> client.ApiClient:
        return self._api

    @classmethod
    def from_kubeconfig(cls, context: str | None = None, config_file: str | None = None) -> KubeRayClient:
        """From ``config_file`` (default: KUBECONFIG, else ~/.kube/config), else the pod's service account."""
        try:
            config.load_kube_config(config_file=config_file, context=context)
        except config.ConfigException:
            try:
                config.load_incluster_config()
            except config.ConfigException as err:
                raise ClusterError(f"no Kubernetes credentials: {err}") from err
        return cls(client.ApiClient())

    # -- writes --------------------------------------------------------------------------------------------

    def apply(self, obj: dict) -> dict:
        """Server-side apply of one object (KubeRay resource, PodMonitor, Namespace, ConfigMap or NetworkPolicy)."""
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace")
        # Strict: a field the server would drop (a typo, a field of a newer CRD) fails the apply instead.
        common = {"body": obj, "field_manager": self._field_manager, "force": True, "field_validation": "Strict",
                  "_content_type": APPLY}
        kind = CUSTOM_KINDS.get(obj["kind"])
        action = f"apply {obj['kind']}/{name}"
        if kind is not None:
            applied = self._call(action, self._custom.patch_namespaced_custom_object, kind.group, kind.version,
                                 namespace, kind.plural, name, **common)
            # The generated client gives a body only for 200; an apply that creates the object answers 201.
            return applied if applied is not None else self.get(kind, name, namespace)
        if obj["kind"] == "Namespace":
            result = self._call(action, self._core.patch_namespace, name, **common)
        elif obj["kind"] == "ConfigMap":
            result = self._call(action, self._core.patch_namespaced_config_map, name, namespace, **common)
        elif obj["kind"] == "NetworkPolicy":
            result = self._call(action, self._networking.patch_namespaced_network_policy, name, namespace, **common)
        else:
            raise ClusterError(f"{action}: this client does not manage {obj['kind']} objects")
        return self._api.sanitize_for_serialization(result)

    def ensure_secret(self, name: str, namespace: str, key: str) -> bool:
        """Create Secret ``name`` with a random ``key`` unless it exists; True if it was created. The value never
        leaves the cluster (it is not printed, rendered or logged)."""
        try:
            self._core.read_namespaced_secret(name, namespace)
            return False
        except client.ApiException as err:
            if err.status != 404:
                raise KubeApiError.from_api_exception(err, f"read Secret/{name}") from err
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "travel-recsys"}},
                "data": {key: base64.b64encode(secrets.token_urlsafe(48).encode()).decode()}}
        self._call(f"create Secret/{name}", self._core.create_namespaced_secret, namespace, body)
        return True

    def delete(self, kind: Kind, name: str, namespace: str) -> Deletion:
        """Delete one resource and, in the foreground, what the operator made of it. Deleting what is gone or going
        is not an error: the answer says which (a foreground deletion keeps the object until its pods are gone)."""
        try:
            current = self._custom.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural,
                                                                name)
            if current.get("metadata", {}).get("deletionTimestamp"):
                return "already being deleted"
            self._custom.delete_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name,
                                                         propagation_policy="Foreground")
        except client.ApiException as err:
            if err.status == 404:
                return "not there"
            raise KubeApiError.from_api_exception(err, f"delete {kind.kind}/{name}") from err
        return "deleted"

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, kind: Kind, name: str, namespace: str) -> dict:
        return self._call(f"get {kind.kind}/{name}", self._custom.get_namespaced_custom_object, kind.group,
                          kind.version, namespace, kind.plural, name)

    def list(self, kind: Kind, namespace: str, label_selector: str | None = None) -> list[dict]:
        result = self._call(f"list {kind.plural}", self._custom.list_namespaced_custom_object, kind.group,
                            kind.version, namespace, kind.plural, label_selector=label_selector)
        return result.get("items", [])

    def status(self, kind: Kind, name: str, namespace: str):
        """The typed status of one resource (RayServiceStatus, RayJobStatus or RayClusterStatus)."""
        return STATUS_TYPES[kind.kind].parse(self.get(kind, name, namespace))

    def wait(self, kind: Kind, name: str, namespace: str, until: Callable[[T], bool], timeout_s: float,
             on_change: Callable[[T], None] | None = None) -> T:
        """Watch one resource until ``until(status)`` holds; the typed status it held last when it did."""
        parse = STATUS_TYPES[kind.kind].parse
        deadline = time.monotonic() + timeout_s
        current = parse(self.get(kind, name, namespace))
        while True:
            if on_change:
                on_change(current)
            if until(current):
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"{kind.kind}/{name} did not reach the awaited state in {timeout_s:.0f} s; "
                                  f"last: {current.summary()}")
            stream = watch.Watch().stream(
                self._custom.list_namespaced_custom_object, kind.group, kind.version, namespace, kind.plural,
                field_selector=f"metadata.name={name}", timeout_seconds=max(1, int(remaining)))
            try:
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        status = parse(event["object"])
                        if status != current:
                            current = status
                            break
                    elif event["type"] == "DELETED":
                        raise ClusterError(f"{kind.kind}/{name} was deleted while waiting")
            except client.ApiException as err:
                if err.status != 410:  # 410 Gone: the watch expired, start again from a fresh read
                    raise KubeApiError.from_api_exception(err, f"watch {kind.kind}/{name}") from err
                current = parse(self.get(kind, name, namespace))

    def _call(self, action: str, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except client.ApiException as err:
            raise KubeApiError.from_api_exception(err, action) from err
