"""The lane runs the KubeRay operator v1.6.2 (the newest source the Go module proxy serves) against the v1.7.0 CRDs
the manifests target: every field the manifests set must be one the older operator knows, or the lane would pass on
a field it silently ignores."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster import environments, manifests
from cluster.crd_schema import CrdSchemas, admit
from cluster.resources import kuberay_kind
from tests.cluster.conftest import COMMIT
from tests.k8s.control_plane import HARNESS_DIR

pytestmark = pytest.mark.k8s


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_field_the_manifests_set_is_known_to_the_lanes_operator(name):
    assert HARNESS_DIR, "K8S_HARNESS_DIR is unset: run the tests with make test"
    operator = CrdSchemas.from_dir(Path(HARNESS_DIR) / "kuberay-operator-crds")
    env = environments.load(name)
    checked = 0
    for obj in manifests.render(env, COMMIT):
        if kuberay_kind(obj):
            assert admit(obj, operator.schema(obj["kind"], "v1"))[1] == [], f"{obj['kind']}/{obj['metadata']['name']}"
            checked += 1
    assert checked == 1 + len(env.training.jobs) + len(env.batch.jobs) + 1
