"""The deployer's RBAC as rendered (tests/k8s runs the CLI as a user bound to it against a real API server)."""

from __future__ import annotations

import pytest

from cluster import environments
from cluster.access import deployer_access
from cluster.__main__ import main


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_the_role_names_only_what_the_cli_touches(name):
    env = environments.load(name)
    namespace, cluster_role, cluster_binding, role, binding = deployer_access(env, ["alice"], ["ml-platform"])
    assert namespace["metadata"]["name"] == env.namespace
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"]
               for rule in cluster_role["rules"] + role["rules"])
    assert {r for rule in cluster_role["rules"] for r in rule.get("resourceNames", [])} == {
        "rayclusters.ray.io", "rayservices.ray.io", "rayjobs.ray.io", env.namespace,
        *(["podmonitors.monitoring.coreos.com"] if env.monitoring.pod_monitor else [])}
    secrets = [rule for rule in role["rules"] if rule["resources"] == ["secrets"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                        "resourceNames": [env.ray_auth_secret]},
                       {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
    assert any(rule["resources"] == ["podmonitors"] for rule in role["rules"]) == env.monitoring.pod_monitor
    subjects = [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
                {"kind": "Group", "name": "ml-platform", "apiGroup": "rbac.authorization.k8s.io"}]
    assert cluster_binding["subjects"] == binding["subjects"] == subjects
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"] == env.namespace


def test_access_needs_someone_to_grant(capsys):
    assert main(["access", "dev"]) == 2
    assert "name at least one --user or --group" in capsys.readouterr().err
