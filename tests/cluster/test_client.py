"""The KubeRay client against a fake API server, for what a real one cannot be made to do on demand: scripted
statuses and watch events, injected errors. tests/k8s runs it against a real API server and operator.

Status examples follow the CRD status schemas, and a test checks them against those schemas.
"""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from cluster import environments, manifests
from cluster.client import KubeRayClient
from cluster.crd_schema import admit
from cluster.errors import KubeApiError
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
