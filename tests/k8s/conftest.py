"""The k8s lane's fixtures: a real control plane with the KubeRay operator (tests/k8s/control_plane.py), or the
cluster ``RECSYS_K8S_KUBECONFIG`` names (an admin's kubeconfig; KubeRay installed there), and the least-privileged
user the CLI runs as."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, utils

from cluster import access, environments
from tests.cluster.conftest import CRD_DIR, MONITORING_CRD_DIR
from tests.k8s.control_plane import ControlPlane
from tests.support import ROOT

EXTERNAL_KUBECONFIG = os.environ.get("RECSYS_K8S_KUBECONFIG")
DEPLOYER = "recsys-deployer"  # the CLI's user in these tests: only the access the `access` command grants
GPU_NODE_LABELS = {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-A10G"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@dataclass
class Kube:
    admin: client.ApiClient
    admin_kubeconfig: Path
    deployer_kubeconfig: Path | None
    plane: ControlPlane | None  # None on an external cluster

    def cli(self, *args: str, kubeconfig: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        """``python -m cluster ARGS --kubeconfig K`` (the least-privileged user's by default)."""
        config = kubeconfig or self.deployer_kubeconfig or self.admin_kubeconfig
        return subprocess.run([sys.executable, "-m", "cluster", *args, "--kubeconfig", str(config)],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def grant(self, env: environments.Environment) -> None:
        """What a cluster admin does once per environment: apply ``python -m cluster access ENV --user ...``."""
        for obj in access.deployer_access(env, [DEPLOYER], []):
            try:
                utils.create_from_dict(self.admin, obj)
            except utils.FailToCreateError as err:
                if any(e.status != 409 for e in err.api_exceptions):
                    raise


@pytest.fixture(scope="session")
def kube(tmp_path_factory) -> Kube:
    if EXTERNAL_KUBECONFIG:
        from kubernetes import config

        admin = config.new_client_from_config(config_file=EXTERNAL_KUBECONFIG)
        yield Kube(admin, Path(EXTERNAL_KUBECONFIG), None, None)
        return
    crds = [*sorted(CRD_DIR.glob("*.yaml")), *sorted(MONITORING_CRD_DIR.glob("*.yaml"))]
    plane = ControlPlane(tmp_path_factory.mktemp("k8s"), crds)
    try:
        plane.add_node("kwok-cpu-0")
        plane.add_node("kwok-gpu-0", labels=GPU_NODE_LABELS, taints=[GPU_TAINT], extended={"nvidia.com/gpu": "4"})
        plane.wait(lambda: all(_ready(n) for n in client.CoreV1Api(plane.admin).list_node().items), "KWOK nodes")
        yield Kube(plane.admin, plane.admin_kubeconfig, plane.kubeconfig(DEPLOYER), plane)
    finally:
        plane.close()


def _ready(node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []) and not any(
        t.key == "node.kubernetes.io/not-ready" for t in node.spec.taints or [])
