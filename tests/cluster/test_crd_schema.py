"""Admission against the KubeRay v1.7.0 CRD schemas: null pruning, defaulting, unknown fields, validation."""

from __future__ import annotations

import copy

import pytest

from cluster import environments, manifests
from cluster.crd_schema import CrdSchemas, admit
from cluster.errors import ClusterError

CLUSTER = manifests.ray_cluster(environments.load("dev"))


def test_defaults_are_applied_as_the_api_server_does(schemas):
    obj = copy.deepcopy(CLUSTER)
    group = obj["spec"]["workerGroupSpecs"][0]
    del group["minReplicas"], group["replicas"]
    admitted, problems = admit(obj, schemas.schema("RayCluster", "v1"))
    assert problems == []
    defaulted = admitted["spec"]["workerGroupSpecs"][0]
    assert (defaulted["minReplicas"], defaulted["replicas"], defaulted["numOfHosts"]) == (0, 0, 1)
    assert "numOfHosts" not in group  # the input is left alone


def test_nulls_are_pruned_before_defaulting(schemas):
    obj = copy.deepcopy(CLUSTER)
    obj["spec"]["workerGroupSpecs"][0]["numOfHosts"] = None
    obj["spec"]["suspend"] = None
    admitted, problems = admit(obj, schemas.schema("RayCluster", "v1"))
    assert problems == []
    assert admitted["spec"]["workerGroupSpecs"][0]["numOfHosts"] == 1
    assert "suspend" not in admitted["spec"]


@pytest.mark.parametrize(("change", "problem"), [
    (lambda s: s.update(enableInTreeAutoscalling=True), "spec.enableInTreeAutoscalling: unknown field"),
    (lambda s: s["headGroupSpec"]["template"]["spec"]["containers"][0].update(imagePolicy="Always"),
     "spec.headGroupSpec.template.spec.containers[0].imagePolicy: unknown field"),
    (lambda s: s["workerGroupSpecs"][0].update(maxReplicas="8"),
     "spec.workerGroupSpecs[0].maxReplicas: '8' is not of type 'integer'"),
    (lambda s: s["workerGroupSpecs"][0].update(maxReplicas=2**31),
     "spec.workerGroupSpecs[0].maxReplicas: 2147483648 is not a 'int32'"),
    (lambda s: s["autoscalerOptions"].update(version="v3"),
     "spec.autoscalerOptions.version: 'v3' is not one of ['v1', 'v2']"),
    (lambda s: s["headGroupSpec"]["rayStartParams"].update({"num-gpus": 0}),
     "spec.headGroupSpec.rayStartParams.num-gpus: 0 is not of type 'string'"),
    (lambda s: s["workerGroupSpecs"][0].pop("groupName"),
     "spec.workerGroupSpecs[0]: 'groupName' is a required property"),
], ids=["unknown-top-level", "unknown-in-pod-template", "wrong-type", "int32-range", "enum", "start-params-are-strings",
        "required"])
def test_schema_problems_name_the_field(schemas, change, problem):
    obj = copy.deepcopy(CLUSTER)
    change(obj["spec"])
    assert problem in admit(obj, schemas.schema("RayCluster", "v1"))[1]


def test_a_crd_directory_must_hold_every_kuberay_crd(tmp_path, crd_dir):
    (tmp_path / "rayclusters.yaml").write_text((crd_dir / "ray.io_rayclusters.yaml").read_text())
    with pytest.raises(ClusterError, match=r"no CRD for RayJob, RayService"):
        CrdSchemas.from_dir(tmp_path)


def test_without_a_crd_directory_the_error_says_where_to_look(monkeypatch):
    monkeypatch.delenv("KUBERAY_CRD_DIR", raising=False)
    with pytest.raises(ClusterError, match=r"set KUBERAY_CRD_DIR .* or use --from-cluster"):
        CrdSchemas.from_dir()


def test_an_unserved_version_is_refused(schemas):
    with pytest.raises(ClusterError, match=r"RayCluster has no served version v2"):
        schemas.schema("RayCluster", "v2")
