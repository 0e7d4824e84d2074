from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from cluster import environments
from cluster.crd_schema import CrdSchemas
from tests.cluster.fake_kube_api import FakeKubeApi
from tests.support import ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CRD_DIR = Path(os.environ.get("KUBERAY_CRD_DIR", ROOT.parent / "shared" / "kuberay" / "v1.7.0" / "crds"))
# The PodMonitor CRD `make test` fetched (Makefile: PROMETHEUS_OPERATOR_CRD_DIR).
MONITORING_CRD_DIR = Path(os.environ.get("PROMETHEUS_OPERATOR_CRD_DIR",
                                         Path.home() / ".cache" / "travel-recsys" / "prometheus-operator-v0.85.0"))


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    assert any(CRD_DIR.glob("*.yaml")), f"KubeRay CRDs not found in {CRD_DIR}; set KUBERAY_CRD_DIR"
    return CRD_DIR


@pytest.fixture(scope="session")
def monitoring_crd_dir() -> Path:
    assert any(MONITORING_CRD_DIR.glob("*.yaml")), f"PodMonitor CRD not found in {MONITORING_CRD_DIR}; run make crds"
    return MONITORING_CRD_DIR


@pytest.fixture(scope="session")
def schemas(crd_dir, monitoring_crd_dir) -> CrdSchemas:
    return CrdSchemas.from_dir(crd_dir, monitoring_crd_dir)


@pytest.fixture(params=["dev", "prod"])
def env(request) -> environments.Environment:
    return environments.load(request.param)


@pytest.fixture(scope="session")
def installed_crds(crd_dir, monitoring_crd_dir) -> dict[str, dict]:
    """The CRDs as the fake API server holds them, KubeRay's and the PodMonitor's (parsed once: they are megabytes
    of YAML)."""
    paths = [*sorted(crd_dir.glob("*.yaml")), *sorted(monitoring_crd_dir.glob("*.yaml"))]
    return {crd["metadata"]["name"]: crd for path in paths
            for crd in [yaml.load(path.read_text(), Loader=yaml.CSafeLoader)]}


@pytest.fixture
def fake_api(installed_crds) -> FakeKubeApi:
    api = FakeKubeApi(installed_crds)
    yield api
    api.close()
