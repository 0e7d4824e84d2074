"""The KubeRay client against a fake API server (no Kubernetes API server runs on these machines).

Status examples follow the CRD status schemas, and a test checks them against those schemas.
"""

from __future__ import annotations

import base64

import pytest
from kubernetes import client as k8s

from cluster import environments, manifests
from cluster.client import KubeRayClient
from cluster.crd_schema import admit
from cluster.errors import KubeApiError, WaitTimeout
from cluster.resources import RAY_CLUSTER, RAY_JOB, RAY_SERVICE
from tests.cluster.conftest import COMMIT

ENV = environments.load("prod")
OBJECTS = {**{obj["kind"]: obj for obj in manifests.render(ENV, COMMIT)},
           "RayJob": manifests.training_job(ENV, "destinations", COMMIT)}
NS = ENV.namespace
SERVICE_PATH = f"/apis/ray.io/v1/namespaces/{NS}/rayservices/destinations"

RAYSERVICE_READY = {
    "conditions": [{"type": "Ready", "status": "True", "reason": "RunningServeApps", "message": "",
                    "lastTransitionTime": "2026-11-29T12:00:00Z"},
                   {"type": "UpgradeInProgress", "status": "False", "reason": "NoPendingCluster", "message": "",
                    "lastTransitionTime": "2026-11-29T12:00:00Z"}],
    "activeServiceStatus": {"rayClusterName": "destinations-7hx2k", "applicationStatuses": {
        "destinations": {"status": "RUNNING", "message": "",
                         "serveDeploymentStatuses": {"Destinations": {"status": "HEALTHY", "message": ""}}}}},
    "numServeEndpoints": 2, "observedGeneration": 3,
}
RAYSERVICE_STARTING = {
    "conditions": [{"type": "Ready", "status": "False", "reason": "Initializing", "message": "waiting",
                    "lastTransitionTime": "2026-11-29T12:00:00Z"}],
    "pendingServiceStatus": {"rayClusterName": "destinations-7hx2k"},
}
RAYJOB_DONE = {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "jobId": "destinations-train-x",
               "rayClusterName": "destinations-train-x-abcde", "startTime": "2026-11-29T12:00:00Z",
               "endTime": "2026-11-29T12:42:00Z", "message": "Job finished successfully.", "succeeded": 1}
RAYCLUSTER_READY = {"state": "ready", "readyWorkerReplicas": 2, "desiredWorkerReplicas": 2, "desiredGPU": "2"}


@pytest.fixture
def kube(fake_api) -> KubeRayClient:
    configuration = k8s.Configuration(host=fake_api.url)
    return KubeRayClient(k8s.ApiClient(configuration))


@pytest.mark.parametrize(("kind", "status"), [("RayService", RAYSERVICE_READY), ("RayService", RAYSERVICE_STARTING),
                                              ("RayJob", RAYJOB_DONE), ("RayCluster", RAYCLUSTER_READY)],
                         ids=["service-ready", "service-starting", "job-done", "cluster-ready"])
def test_the_status_examples_follow_the_crd_status_schemas(schemas, kind, status):
    schema = schemas.schema(kind, "v1")["properties"]["status"]
    assert admit(status, schema)[1] == []


def test_apply_is_a_server_side_apply_of_the_rendered_object(fake_api, kube):
    applied = kube.apply(OBJECTS["RayService"])
    request = fake_api.requests[0]
    assert (request.method, request.path) == ("PATCH", SERVICE_PATH)
    assert request.headers["Content-Type"] == "application/apply-patch+yaml"
    assert request.query == {"fieldManager": ["travel-recsys"], "force": ["true"]}
    assert request.body == OBJECTS["RayService"]
    assert applied["metadata"]["uid"]  # a create (201) is read back: the generated client drops its body


@pytest.mark.parametrize(("kind", "path"), [
    ("Namespace", f"/api/v1/namespaces/{NS}"),
    ("ConfigMap", f"/api/v1/namespaces/{NS}/configmaps/destinations-hadoop-conf"),
    ("NetworkPolicy", f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/destinations-ray"),
    ("RayCluster", f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/destinations-interactive"),
    ("RayJob", f"/apis/ray.io/v1/namespaces/{NS}/rayjobs/destinations-train-destinations-0123456"),
])
def test_every_rendered_kind_is_applied_at_its_endpoint(fake_api, kube, kind, path):
    kube.apply(OBJECTS[kind])
    first = fake_api.requests[0]
    assert (first.method, first.path, first.headers["Content-Type"]) == ("PATCH", path, "application/apply-patch+yaml")


def test_typed_status_of_a_ready_rayservice(fake_api, kube):
    fake_api.put(SERVICE_PATH, {**OBJECTS["RayService"], "status": RAYSERVICE_READY})
    status = kube.status(RAY_SERVICE, "destinations", NS)
    assert status.ready and not status.upgrading
    assert status.applications["destinations"].status == "RUNNING"
    assert status.applications["destinations"].deployments == {"Destinations": "HEALTHY"}
    assert status.summary() == "Ready; destinations RUNNING; 2 Serve endpoint(s)"


def test_typed_status_of_a_job_and_a_cluster(fake_api, kube):
    fake_api.put(f"/apis/ray.io/v1/namespaces/{NS}/rayjobs/train", {"status": RAYJOB_DONE})
    fake_api.put(f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/work", {"status": RAYCLUSTER_READY})
    job = kube.status(RAY_JOB, "train", NS)
    assert job.finished and job.succeeded_job and job.cluster == "destinations-train-x-abcde"
    assert job.summary() == "Complete / job SUCCEEDED: Job finished successfully."
    cluster = kube.status(RAY_CLUSTER, "work", NS)
    assert cluster.ready and cluster.summary() == "ready; workers 2/2 ready"


def test_wait_follows_the_watch_until_the_condition_holds(fake_api, kube):
    fake_api.put(SERVICE_PATH, {**OBJECTS["RayService"], "status": RAYSERVICE_STARTING})
    collection = f"/apis/ray.io/v1/namespaces/{NS}/rayservices"
    fake_api.watch_events[collection] = [
        {"type": "MODIFIED", "object": {**OBJECTS["RayService"], "status": RAYSERVICE_STARTING}},
        {"type": "MODIFIED", "object": {**OBJECTS["RayService"], "status": RAYSERVICE_READY}},
    ]
    seen = []
    status = kube.wait(RAY_SERVICE, "destinations", NS, lambda s: s.ready, timeout_s=10,
                       on_change=lambda s: seen.append(s.ready))
    assert status.ready and seen == [False, True]
    watch = [r for r in fake_api.requests if r.path == collection][0]
    assert watch.query["fieldSelector"] == ["metadata.name=destinations"] and watch.query["watch"] == ["true"]


def test_wait_gives_up_at_its_timeout(fake_api, kube):
    fake_api.put(SERVICE_PATH, {**OBJECTS["RayService"], "status": RAYSERVICE_STARTING})
    with pytest.raises(WaitTimeout, match=r"RayService/destinations did not reach the awaited state in 1 s; "
                                          r"last: not ready \(Initializing\)"):
        kube.wait(RAY_SERVICE, "destinations", NS, lambda s: s.ready, timeout_s=1)


@pytest.mark.parametrize(("status", "reason", "message", "causes", "expected"), [
    (403, "Forbidden", 'rayservices.ray.io "destinations" is forbidden: User "dev" cannot patch resource', [],
     'apply RayService/destinations: 403 Forbidden: rayservices.ray.io "destinations" is forbidden: User "dev" '
     'cannot patch resource'),
    (409, "Conflict", 'Apply failed with 1 conflict: conflict with "kubectl": .spec.serveConfigV2', [],
     'apply RayService/destinations: 409 Conflict: Apply failed with 1 conflict: conflict with "kubectl": '
     '.spec.serveConfigV2'),
    (422, "Invalid", "", [{"field": "spec.rayClusterConfig.workerGroupSpecs[0].minReplicas",
                           "message": "Invalid value: -1: should be greater than or equal to 0"}],
     "apply RayService/destinations: 422 Invalid: spec.rayClusterConfig.workerGroupSpecs[0].minReplicas: "
     "Invalid value: -1: should be greater than or equal to 0"),
], ids=["403", "409", "422"])
def test_api_errors_reach_the_user_as_one_line(fake_api, kube, status, reason, message, causes, expected):
    fake_api.fail("PATCH", SERVICE_PATH, status, reason, message, causes)
    with pytest.raises(KubeApiError) as raised:
        kube.apply(OBJECTS["RayService"])
    assert str(raised.value) == expected
    assert "\n" not in str(raised.value)


def test_a_missing_resource_is_a_404_line(kube):
    with pytest.raises(KubeApiError, match=r'^get RayService/destinations: 404 NotFound: rayservices '
                                           r'"destinations" not found$'):
        kube.get(RAY_SERVICE, "destinations", NS)


def test_the_auth_secret_is_created_once_with_a_random_token(fake_api, kube):
    assert kube.ensure_secret("destinations-ray-auth", NS, "auth_token") is True
    created = fake_api.objects[f"/api/v1/namespaces/{NS}/secrets/destinations-ray-auth"]
    assert len(base64.b64decode(created["data"]["auth_token"])) >= 48
    assert kube.ensure_secret("destinations-ray-auth", NS, "auth_token") is False
    assert [r.method for r in fake_api.requests] == ["GET", "POST", "GET"]


def test_list_and_delete(fake_api, kube):
    kube.apply(OBJECTS["RayJob"])
    assert [j["metadata"]["name"] for j in kube.list(RAY_JOB, NS)] == ["destinations-train-destinations-0123456"]
    kube.delete(RAY_JOB, "destinations-train-destinations-0123456", NS)
    assert kube.list(RAY_JOB, NS) == []
    delete = [r for r in fake_api.requests if r.method == "DELETE"][0]
    assert delete.query.get("propagationPolicy") == ["Foreground"] or delete.body.get("propagationPolicy") == "Foreground"
