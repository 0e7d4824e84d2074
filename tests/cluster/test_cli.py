"""python -m cluster end to end offline, and against a fake API server for what a real one cannot be made to do on
demand (a cluster without a CRD, a job's scripted failure, an injected error); tests/k8s runs the commands against a
real API server and the KubeRay operator."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from cluster.__main__ import main
from tests.cluster.conftest import COMMIT, CRD_DIR, MONITORING_CRD_DIR
from tests.cluster.fake_kube_api import FakeKubeApi
from tests.support import ROOT

NS = "travel-recsys"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_render_prints_the_manifests_as_multi_document_yaml(capsys, env):
    code, out, _ = run(capsys, "render", env, "--commit", COMMIT)
    assert code == 0
    assert [d["kind"] for d in yaml.safe_load_all(out)] == ["Namespace", "ConfigMap", "NetworkPolicy", "RayService",
                                                           *["RayJob"] * 4, "RayCluster",
                                                           *(["PodMonitor"] if env == "prod" else [])]


def test_render_pins_the_checkout_commit_by_default():
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    out = subprocess.run([sys.executable, "-m", "cluster", "render", "prod"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    job = [d for d in yaml.safe_load_all(out) if d["kind"] == "RayJob"][0]
    assert head in job["spec"]["runtimeEnvYAML"]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_validate_accepts_both_environments(capsys, env):
    code, out, _ = run(capsys, "validate", env, "--commit", COMMIT, "--crd-dir", str(CRD_DIR),
                       "--monitoring-crd-dir", str(MONITORING_CRD_DIR))
    assert code == 0
    objects = 10 if env == "prod" else 9  # prod's PodMonitor
    assert out.strip() == (f"{env}: {objects} objects valid (CRDs from {CRD_DIR} and {MONITORING_CRD_DIR}, "
                           "Kubernetes 1.32.0)")


def test_validate_names_the_missing_pod_monitor_crd(capsys, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_OPERATOR_CRD_DIR", raising=False)
    code, _, err = run(capsys, "validate", "prod", "--commit", COMMIT, "--crd-dir", str(CRD_DIR))
    assert code == 1
    assert (f"PodMonitor/destinations-ray: {CRD_DIR}: no CRD for PodMonitor; install the Prometheus Operator, or set "
            "monitoring.pod_monitor: false; to validate offline set PROMETHEUS_OPERATOR_CRD_DIR") in err


def test_validate_lists_every_problem_and_exits_1(capsys, tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "cluster" / "prod.yaml").read_text())
    raw["serving"]["workers"][0].update(min_replicas=6, max_replicas=4)
    raw["serving"]["head"]["cpu"] = "4"
    raw["name"] = "destinations-with-a-name-far-too-long-for-kuberay-x"
    env = tmp_path / "broken.yaml"
    env.write_text(yaml.safe_dump(raw))
    code, _, err = run(capsys, "validate", str(env), "--commit", COMMIT, "--crd-dir", str(CRD_DIR))
    assert code == 1
    assert err.startswith(f"invalid manifests for {env}: ")
    name = raw["name"]
    assert f"  RayService/{name}: spec.rayClusterConfig.workerGroupSpecs[0].minReplicas: must not exceed " \
           f"maxReplicas (4), got 6; lower minReplicas" in err
    assert f"  RayService/{name}: metadata.name: RayService names must be at most 47 characters" in err


def test_validate_without_crds_says_where_to_get_them(capsys, monkeypatch):
    monkeypatch.delenv("KUBERAY_CRD_DIR", raising=False)
    code, _, err = run(capsys, "validate", "dev", "--commit", COMMIT)
    assert code == 2
    assert err.startswith("error: no CRD directory: set KUBERAY_CRD_DIR")


def test_an_unknown_environment_exits_2(capsys):
    code, _, err = run(capsys, "render", "staging", "--commit", COMMIT)
    assert code == 2 and "known: ['dev', 'prod']" in err


def test_validate_from_a_cluster_without_the_prometheus_operator_names_the_missing_crd(capsys, installed_crds,
                                                                                       tmp_path):
    """Dev renders no PodMonitor and passes; prod's PodMonitor is named with the fix."""
    api = FakeKubeApi({name: crd for name, crd in installed_crds.items() if name.endswith(".ray.io")})
    try:
        kubeconfig = str(api.kubeconfig(tmp_path))
        assert run(capsys, "validate", "dev", "--commit", COMMIT, "--from-cluster", "--kubeconfig", kubeconfig)[0] == 0
        code, _, err = run(capsys, "validate", "prod", "--commit", COMMIT, "--from-cluster", "--kubeconfig", kubeconfig)
    finally:
        api.close()
    assert code == 1
    assert "PodMonitor/destinations-ray: the cluster: no CRD for PodMonitor; install the Prometheus Operator" in err


def test_a_failed_training_job_exits_1_with_a_fake_api_server(capsys, fake_api, tmp_path):
    fake_api.watch_events[f"/apis/ray.io/v1/namespaces/{NS}/rayjobs"] = [
        {"type": "MODIFIED", "object": {"metadata": {"name": "x"}, "status": {
            "jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": "error: data path does not exist"}}}]
    code, out, _ = run(capsys, "submit-training", "prod", "--model", "accommodations", "--commit", COMMIT, "--wait",
                       "30", "--kubeconfig", str(fake_api.kubeconfig(tmp_path)))
    assert code == 1 and out.splitlines()[-1].endswith("Failed / job FAILED: error: data path does not exist")


def test_an_api_error_is_one_line_and_exit_2_with_a_fake_api_server(capsys, fake_api, tmp_path):
    fake_api.fail("PATCH", f"/apis/ray.io/v1/namespaces/{NS}/rayservices/destinations", 403, "Forbidden",
                  'rayservices.ray.io "destinations" is forbidden: User "dev" cannot patch resource "rayservices"')
    code, _, err = run(capsys, "deploy", "prod", "--commit", COMMIT, "--kubeconfig",
                       str(fake_api.kubeconfig(tmp_path)))
    assert code == 2
    assert err == ('error: apply RayService/destinations: 403 Forbidden: rayservices.ray.io "destinations" is '
                   'forbidden: User "dev" cannot patch resource "rayservices"\n')
