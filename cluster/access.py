"""Least privilege for the people and pipelines that run ``python -m cluster``: the RBAC objects a cluster admin
applies once per environment (``python -m cluster access ENV --user NAME``), granting exactly the verbs and resources
the CLI uses, on the names it uses where Kubernetes allows naming them.

The admin creates the namespace (binding a Role needs it); the CLI then only patches it. Kubernetes cannot limit
``create`` to a name, so the CLI's user may create Secrets in the namespace (``deploy`` creates the Ray auth token)
but read only that one Secret: never the HDFS credentials nor anything else there.
"""

from __future__ import annotations

from cluster import manifests
from cluster.environments import Environment
from cluster.resources import CUSTOM_KINDS, KINDS, POD_MONITOR

RBAC = "rbac.authorization.k8s.io/v1"


def deployer_access(env: Environment, users: list[str], groups: list[str]) -> list[dict]:
    """Namespace, ClusterRole + binding (CRDs to validate against, the namespace itself), Role + binding."""
    name = f"{env.name}-deployer"
    subjects = ([{"kind": "User", "name": u, "apiGroup": "rbac.authorization.k8s.io"} for u in users]
                + [{"kind": "Group", "name": g, "apiGroup": "rbac.authorization.k8s.io"} for g in groups])
    crds = [f"{kind.plural}.{kind.group}" for kind in CUSTOM_KINDS.values()
            if kind.kind in KINDS or env.monitoring.pod_monitor]
    cluster_rules = [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get"],
         "resourceNames": crds},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "patch"], "resourceNames": [env.namespace]},
    ]
    kuberay = [kind.plural for kind in KINDS.values()]
    rules = [
        # deploy, submit-*, status (with --wait: watch), delete
        {"apiGroups": ["ray.io"], "resources": kuberay, "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        *_named("", "configmaps", f"{env.name}-hadoop-conf"),
        *_named("networking.k8s.io", "networkpolicies", f"{env.name}-ray"),
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": [env.ray_auth_secret]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    if env.monitoring.pod_monitor:
        rules.extend(_named(POD_MONITOR.group, POD_MONITOR.plural, f"{env.name}-ray"))
    labels = manifests.labels(env, "access")
    return [
        manifests.namespace(env),
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name, "labels": labels},
         "rules": cluster_rules},
        {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": name, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": subjects},
        {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": name, "namespace": env.namespace, "labels": labels},
         "rules": rules},
        {"apiVersion": RBAC, "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": env.namespace, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}, "subjects": subjects},
    ]


def _named(group: str, resource: str, name: str) -> list[dict]:
    """Apply one object by name: get and patch limited to it; create cannot be (Kubernetes does not name it)."""
    return [{"apiGroups": [group], "resources": [resource], "verbs": ["get", "patch"], "resourceNames": [name]},
            {"apiGroups": [group], "resources": [resource], "verbs": ["create"]}]
