"""The end to end through the operator: `cluster deploy` (as the least-privileged user) of an environment like dev,
the KubeRay operator reconciling it on KWOK nodes and deploying serveConfigV2 through the dashboard of a real Ray
head (tests/k8s/lane.py), answers through the API server's service proxy, a new model version rolled out by the
operator, and a training RayJob the operator submits over HTTP."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from cluster import environments
from recsys.artifact_store import ModelStore
from tests.k8s.conftest import Kube
from tests.k8s.lane import lane_environment, publish_archive, start_archive_server, start_ray_head
from tests.support import ROOT

pytestmark = pytest.mark.k8s

SECOND_VERSION = "v2-through-operator"
VISITOR = {"cities": [8183, 15626], "booker_country": "Elbonia", "device_class": "mobile"}


class Lane:
    def __init__(self, kube: Kube, env_file: Path, store: ModelStore, first: str, commit: str) -> None:
        self.kube, self.env_file, self.store, self.first, self.commit = kube, env_file, store, first, commit
        self.env = environments.load(str(env_file))
        cert, key = kube.plane.pki.client("recsys-lane-test", ("system:masters",))
        tls = ssl.create_default_context(cafile=str(kube.plane.pki.ca))
        tls.load_cert_chain(str(cert), str(key))
        self._http = httpx.Client(base_url=f"https://{kube.plane.api_ip}:6443", verify=tls, timeout=60)

    def serve(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A request to the Serve Service of the RayService, through the API server's service proxy."""
        proxy = (f"/api/v1/namespaces/{self.env.namespace}/services/{self.env.name}-serve-svc:"
                 f"{self.env.serve_port}/proxy")
        return self._http.request(method, proxy + path, **kwargs)

    def close(self) -> None:
        self._http.close()


@pytest.fixture(scope="module")
def lane(kube, both_models_store, smoke_data, tmp_path_factory) -> Lane:
    if kube.plane is None:
        pytest.skip("needs the lane's own control plane: a real Ray head in its network namespace stands in for "
                    "the Ray pods (RECSYS_K8S_KUBECONFIG points at a cluster that runs real ones)")
    work = tmp_path_factory.mktemp("lane")
    store = ModelStore(str(work / "models"))
    for model, version in (("destinations", both_models_store.destinations),
                           ("accommodations", both_models_store.accommodations)):
        fetched = ModelStore(both_models_store.uri).fetch(model, version, work / "fetch")
        store.publish(fetched.path, fetched.manifest)
    # The same artifact as a second version: what a new training run would publish.
    fetched = store.fetch("destinations", both_models_store.destinations, work / "fetch")
    store.publish(fetched.path, fetched.manifest.model_copy(
        update={"version": SECOND_VERSION, "created_at": dt.datetime.now(dt.UTC)}))
    env_file = lane_environment(work / "lane.yaml", store.uri, str(smoke_data), work / "model-cache")
    env = environments.load(str(env_file))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    publish_archive(work / "archive", commit)
    start_archive_server(kube.plane, work / "archive")
    # The platform's part: the namespace and the deployer's access, and the Ray auth token the RayService names.
    kube.grant(env)
    token = secrets.token_urlsafe(48)
    client.CoreV1Api(kube.admin).create_namespaced_secret(env.namespace, {
        "metadata": {"name": env.ray_auth_secret}, "data": {"auth_token": base64.b64encode(token.encode()).decode()}})
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-lane-", dir="/tmp"))  # Ray's socket paths must stay short
    head = start_ray_head(kube.plane, ray_tmp, token)
    lane = Lane(kube, env_file, store, both_models_store.destinations, commit)
    try:
        yield lane
    finally:
        lane.close()
        kube.plane.stop(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_the_rayservice_becomes_ready_through_the_operator_and_answers(lane):
    deployed = lane.kube.cli("deploy", str(lane.env_file), "--commit", lane.commit,
                             "--model-version", f"destinations={lane.first}", "--wait", "600")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert deployed.stdout.splitlines()[-1].startswith(
        f"RayService/{lane.env.name}: Ready; accommodations RUNNING, destinations RUNNING, trips RUNNING")
    model = lane.serve("GET", "/destinations/model")
    assert model.status_code == 200, model.text
    assert model.json()["version"] == lane.first
    answer = lane.serve("POST", "/destinations/recommend", json={**VISITOR, "k": 4})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["cities"]) == 4 and answer.json()["model_version"] == lane.first
    refused = lane.serve("POST", "/destinations/recommend", json={**VISITOR, "cities": [], "k": 4})
    assert refused.status_code == 422 and "cities" in refused.text

    status = lane.kube.cli("status", str(lane.env_file))
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0].startswith(f"RayService/{lane.env.name}: Ready; accommodations RUNNING")


def test_a_new_model_version_reaches_the_replica_through_the_operator(lane):
    deployed = lane.kube.cli("deploy", str(lane.env_file), "--commit", lane.commit,
                             "--model-version", f"destinations={SECOND_VERSION}", "--wait", "600")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    # The operator has PUT the new serveConfigV2 (the applications stay RUNNING); the replica loads, warms up and
    # vets the new version on its own before it swaps.
    lane.kube.plane.wait(lambda: lane.serve("GET", "/destinations/model").json()["version"] == SECOND_VERSION,
                         f"the replica to serve {SECOND_VERSION}", timeout=300)
    answer = lane.serve("POST", "/destinations/recommend", json={**VISITOR, "k": 2})
    assert answer.status_code == 200 and answer.json()["model_version"] == SECOND_VERSION


def test_a_training_rayjob_runs_on_the_head_over_http(lane):
    before = set(lane.store.versions("destinations"))
    submitted = lane.kube.cli("submit-training", str(lane.env_file), "--commit", lane.commit,
                              "--model", "destinations", "--wait", "900", timeout=1000)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "SUCCEEDED" in submitted.stdout.splitlines()[-1]
    published = set(lane.store.versions("destinations")) - before
    assert len(published) == 1, submitted.stdout
    assert lane.store.manifest("destinations", published.pop()).git_commit == lane.commit
