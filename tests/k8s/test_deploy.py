"""dev and prod through `python -m cluster` against a real API server and the real KubeRay operator, run as the
least-privileged user `python -m cluster access` grants: admitted (strict field validation, the CRDs' CEL rules),
reconciled into pods the restricted Pod Security Standard admits, Running on KWOK nodes (prod's GPU workers on the
GPU node), read back by `status`, owned by the CLI's field manager, deleted idempotently."""

from __future__ import annotations

import copy
import json

import pytest
from kubernetes import client

from cluster import environments, manifests
from cluster.client import APPLY, FIELD_MANAGER, KubeRayClient
from cluster.errors import KubeApiError
from cluster.resources import RAY_CLUSTER, RAY_SERVICE
from tests.cluster.conftest import COMMIT
from tests.k8s.conftest import DEPLOYER

pytestmark = pytest.mark.k8s

ENVIRONMENTS = ("dev", "prod")
# Pods the operator makes of each environment: the RayService's cluster (head + min workers), the interactive head.
EXPECTED_PODS = {"dev": {"head": 2, "worker": 1}, "prod": {"head": 2, "worker": 1}}


@pytest.fixture(scope="module")
def deployed(kube):
    """dev and prod granted to the deployer, then deployed by it; deleted (by the admin) at the end, so that no
    RayService of theirs is left for the operator to point at the lane's real Ray head."""
    envs = {name: environments.load(name) for name in ENVIRONMENTS}
    for env in envs.values():
        kube.grant(env)
    runs = {name: kube.cli("deploy", name, "--commit", COMMIT) for name in ENVIRONMENTS}
    yield envs, runs
    core = client.CoreV1Api(kube.admin)
    for name, env in envs.items():
        kube.cli("delete", name, kubeconfig=kube.admin_kubeconfig)
        if kube.plane:
            kube.plane.wait(lambda env=env: not core.list_namespaced_pod(env.namespace).items,
                            f"{name}'s pods to go", timeout=180)


def message(err: client.ApiException) -> str:
    """The message of the Status the API server answered with."""
    return json.loads(err.body)["message"]


def pods(kube, env: environments.Environment) -> list:
    return client.CoreV1Api(kube.admin).list_namespaced_pod(
        env.namespace, label_selector=f"app.kubernetes.io/instance={env.name}").items


def test_dev_and_prod_are_admitted_by_the_api_server_as_the_deployer(deployed):
    envs, runs = deployed
    for name, run in runs.items():
        assert run.returncode == 0, f"{name}: {run.stdout}{run.stderr}"
        kinds = [o["kind"] for o in manifests.render(envs[name], COMMIT) if o["kind"] != "RayJob"]
        assert [line.split()[1].split("/")[0] for line in run.stdout.splitlines() if line.startswith("applied")] \
            == kinds
        assert f"created Secret/{envs[name].ray_auth_secret}" in run.stdout
    assert "PodMonitor" in runs["prod"].stdout and "PodMonitor" not in runs["dev"].stdout


def test_the_operators_pods_are_admitted_under_restricted_pss_and_run_on_kwok_nodes(kube, deployed):
    if kube.plane is None:
        pytest.skip("names the lane's KWOK nodes; on a real cluster the pods also need the image pulled")
    envs, _ = deployed
    core = client.CoreV1Api(kube.admin)
    for name, env in envs.items():
        labels = core.read_namespace(env.namespace).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

        def running(env=env, name=name):
            found = pods(kube, env)
            by_type = {kind: [p for p in found if p.metadata.labels.get("ray.io/node-type") == kind]
                       for kind in ("head", "worker")}
            return all(len(by_type[k]) == n and all(p.status.phase == "Running" for p in by_type[k])
                       for k, n in EXPECTED_PODS[name].items()) and by_type

        by_type = kube.plane.wait(running, f"{name}'s Ray pods Running", timeout=180)
        for pod in by_type["head"] + by_type["worker"]:
            assert pod.spec.security_context.run_as_non_root and pod.spec.security_context.seccomp_profile
        gpu_workers = [p for p in by_type["worker"]
                       if "nvidia.com/gpu" in (p.spec.containers[0].resources.limits or {})]
        if name == "prod":
            assert gpu_workers and all(p.spec.node_name == "kwok-gpu-0" for p in gpu_workers)
        else:
            assert not gpu_workers and all(p.spec.node_name == "kwok-cpu-0" for p in by_type["worker"])
        refusals = [e.message for e in core.list_namespaced_event(env.namespace).items
                    if "PodSecurity" in (e.message or "")]
        assert not refusals, refusals


def test_the_namespace_really_refuses_a_pod_that_breaks_restricted_pss(kube, deployed):
    envs, _ = deployed
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unrestricted"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    with pytest.raises(client.ApiException) as refused:
        client.CoreV1Api(kube.admin).create_namespaced_pod(envs["dev"].namespace, pod)
    assert refused.value.status == 403 and 'violates PodSecurity "restricted' in message(refused.value)


def test_status_reads_the_real_status_and_the_interactive_cluster_becomes_ready(kube, deployed):
    envs, _ = deployed

    def status():
        run = kube.cli("status", "dev")
        assert run.returncode == 0, run.stderr
        return "RayCluster/destinations-dev-interactive: ready; workers 0/0 ready" in run.stdout and run.stdout

    out = kube.plane.wait(status, "the interactive RayCluster ready", timeout=120) if kube.plane else status()
    # No Ray head answers for dev here (the lane's real one runs only for its own environment): never Ready.
    assert out.splitlines()[0].startswith("RayService/destinations-dev: not ready")


def test_deploy_wait_times_out_on_the_real_status_with_what_it_saw_last(kube, deployed):
    run = kube.cli("deploy", "dev", "--commit", COMMIT, "--wait", "5")
    assert run.returncode == 2
    assert "RayService/destinations-dev did not reach the awaited state in 5 s; last: not ready" in run.stderr


def test_deploying_again_changes_nothing(kube, deployed):
    envs, _ = deployed
    custom = client.CustomObjectsApi(kube.admin)
    before = custom.get_namespaced_custom_object("ray.io", "v1", envs["dev"].namespace, "rayservices",
                                                 envs["dev"].name)
    run = kube.cli("deploy", "dev", "--commit", COMMIT)
    assert run.returncode == 0, run.stderr
    assert "created Secret" not in run.stdout  # the token is made once
    after = custom.get_namespaced_custom_object("ray.io", "v1", envs["dev"].namespace, "rayservices",
                                                envs["dev"].name)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_the_deployer_reads_only_the_secret_it_needs(kube, deployed):
    if kube.deployer_kubeconfig is None:
        pytest.skip("an external cluster: the lane's own CA issues the deployer's certificate")
    envs, _ = deployed
    env = envs["dev"]
    core = client.CoreV1Api(kube.plane.api_client(kube.deployer_kubeconfig))
    core.read_namespaced_secret(env.ray_auth_secret, env.namespace)
    for action in (lambda: core.read_namespaced_secret(env.hdfs.credentials_secret, env.namespace),
                   lambda: core.list_namespaced_secret(env.namespace),
                   lambda: core.list_namespaced_pod(env.namespace),
                   lambda: core.read_namespaced_secret(env.ray_auth_secret, "default")):
        with pytest.raises(client.ApiException) as refused:
            action()
        assert refused.value.status == 403 and f'User "{DEPLOYER}" cannot' in message(refused.value)


def test_the_server_owns_fields_by_manager_and_deploy_takes_its_fields_back(kube, deployed):
    envs, _ = deployed
    env = envs["dev"]
    custom = client.CustomObjectsApi(kube.admin)
    edit = {"apiVersion": RAY_SERVICE.api_version, "kind": RAY_SERVICE.kind,
            "metadata": {"name": env.name, "namespace": env.namespace},
            "spec": {"upgradeStrategy": {"type": "NewCluster"}}}
    with pytest.raises(client.ApiException) as conflict:
        custom.patch_namespaced_custom_object("ray.io", "v1", env.namespace, "rayservices", env.name, edit,
                                              field_manager="someone-by-hand", _content_type=APPLY)
    assert conflict.value.status == 409 and f'conflict with "{FIELD_MANAGER}"' in message(conflict.value)
    custom.patch_namespaced_custom_object("ray.io", "v1", env.namespace, "rayservices", env.name, edit,
                                          field_manager="someone-by-hand", force=True,
                                          _content_type=APPLY)
    run = kube.cli("deploy", "dev", "--commit", COMMIT)
    assert run.returncode == 0, run.stderr
    obj = custom.get_namespaced_custom_object("ray.io", "v1", env.namespace, "rayservices", env.name)
    assert obj["spec"]["upgradeStrategy"]["type"] == env.serving.upgrade_strategy
    owners = {m["manager"] for m in obj["metadata"]["managedFields"] if "f:spec" in m.get("fieldsV1", {})}
    assert FIELD_MANAGER in owners


def test_unknown_fields_and_the_crds_cel_rules_are_refused_with_the_servers_message(kube, deployed):
    envs, _ = deployed
    env = envs["dev"]
    kube_client = KubeRayClient(kube.plane.api_client(kube.deployer_kubeconfig) if kube.deployer_kubeconfig
                                else kube.admin)
    cluster = manifests.ray_cluster(env)
    typo = copy.deepcopy(cluster)
    typo["spec"]["enableInTreeAutoscalling"] = True
    # Server-side apply builds its typed patch before field validation runs, so the real answer to an unknown field
    # is a 500 naming it (why the CLI validates against the CRDs before it applies).
    with pytest.raises(KubeApiError) as refused:
        kube_client.apply(typo)
    assert refused.value.status == 500
    assert ".spec.enableInTreeAutoscalling: field not declared in schema" in str(refused.value)
    foreign = copy.deepcopy(cluster)
    foreign["metadata"]["name"] = f"{env.name}-cel"
    foreign["spec"]["managedBy"] = "someone-else"
    with pytest.raises(KubeApiError) as refused:
        kube_client.apply(foreign)
    assert refused.value.status == 422 and "managedBy field value must be either" in str(refused.value)
    with pytest.raises(client.ApiException):
        client.CustomObjectsApi(kube.admin).get_namespaced_custom_object(
            RAY_CLUSTER.group, RAY_CLUSTER.version, env.namespace, RAY_CLUSTER.plural, f"{env.name}-cel")


def test_submit_starts_a_job_per_model_and_set_whose_submitter_pods_pss_admits(kube, deployed):
    envs, _ = deployed
    env = envs["dev"]
    refused = kube.cli("submit-training", "dev", "--model", "hotels", "--commit", COMMIT)
    assert refused.returncode == 2 and "--model hotels: not a training job of dev" in refused.stderr
    refused = kube.cli("submit-precompute", "dev", "--predictions", "hotels", "--commit", COMMIT)
    assert refused.returncode == 2 and "--predictions hotels: not a precompute job of dev" in refused.stderr
    for command in ("submit-training", "submit-precompute"):
        run = kube.cli(command, "dev", "--commit", COMMIT)
        assert run.returncode == 0, run.stdout + run.stderr
    jobs = client.CustomObjectsApi(kube.admin).list_namespaced_custom_object(
        "ray.io", "v1", env.namespace, "rayjobs")["items"]
    assert sorted(j["spec"]["entrypoint"] for j in jobs) == [
        "python -m batch.precompute --config configs/batch/destinations.yaml",
        "python -m batch.precompute --config configs/batch/trips.yaml",
        "python -m training.accommodations --config configs/train/accommodations.yaml",
        "python -m training.destinations --config configs/train/destinations.yaml"]
    if kube.plane is None:
        return
    # Once a job's cluster is up, the operator starts its submitter (a Kubernetes Job) in the restricted namespace.
    core = client.CoreV1Api(kube.admin)
    names = {j["metadata"]["name"] for j in jobs}

    def submitters():
        started = {p.metadata.labels.get("job-name") for p in core.list_namespaced_pod(env.namespace).items
                   if p.status.phase in ("Running", "Succeeded")}
        return names <= started

    kube.plane.wait(submitters, "every job's submitter pod", timeout=240)
    deleted = kube.cli("delete", "dev", "--what", "jobs")
    assert deleted.returncode == 0, deleted.stderr
    assert sorted(deleted.stdout.splitlines()) == sorted(f"deleted RayJob/{name}" for name in names)


def test_delete_removes_what_deploy_made_and_again_is_not_an_error(kube, deployed):
    envs, _ = deployed
    first = kube.cli("delete", "dev", "--what", "interactive")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["deleted RayCluster/destinations-dev-interactive"]
    again = kube.cli("delete", "dev", "--what", "interactive")
    assert again.returncode == 0, again.stderr
    # Foreground deletion: the RayCluster stays until the garbage collector has removed its pods.
    assert again.stdout.splitlines()[0] in ("RayCluster/destinations-dev-interactive: already being deleted",
                                            "RayCluster/destinations-dev-interactive: not there")
    env = envs["dev"]
    custom = client.CustomObjectsApi(kube.admin)

    def gone():
        remaining = [p for p in pods(kube, env) if p.metadata.labels.get("ray.io/cluster") == f"{env.name}-interactive"]
        clusters = custom.list_namespaced_custom_object("ray.io", "v1", env.namespace, "rayclusters")["items"]
        return not remaining and f"{env.name}-interactive" not in {c["metadata"]["name"] for c in clusters}

    if kube.plane:
        kube.plane.wait(gone, "the interactive cluster and its pods to go", timeout=120)
        last = kube.cli("delete", "dev", "--what", "interactive")
        assert last.stdout.splitlines() == ["RayCluster/destinations-dev-interactive: not there"]
