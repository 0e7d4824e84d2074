"""Typed KubeRay status: when is an applied RayService spec really the one serving."""

from __future__ import annotations

import copy

import pytest

from cluster.status import RayServiceStatus
from tests.cluster.test_client import RAYSERVICE_READY


def service(generation: int = 3, **status_changes) -> dict:
    status = copy.deepcopy(RAYSERVICE_READY)
    status.update(status_changes)
    return {"metadata": {"name": "destinations", "generation": generation}, "status": status}


UPGRADING = [{"type": "Ready", "status": "True", "reason": "RunningServeApps"},
             {"type": "UpgradeInProgress", "status": "True", "reason": "BothActivePendingClustersExist"}]


@pytest.mark.parametrize(("obj", "generation", "live"), [
    (service(), 3, True),
    (service(), None, True),
    (service(observedGeneration=2), 3, False),
    (service(conditions=UPGRADING, pendingServiceStatus={"rayClusterName": "destinations-new"}), 3, False),
    (service(activeServiceStatus={"rayClusterName": "destinations-7hx2k", "applicationStatuses": {
        "destinations": {"status": "DEPLOYING", "serveDeploymentStatuses": {}}}}), 3, False),
    (service(activeServiceStatus={"rayClusterName": "destinations-7hx2k"}), 3, False),
], ids=["reconciled-and-running", "generation-unknown", "not-yet-reconciled", "new-cluster-pending",
        "app-deploying", "no-applications"])
def test_a_spec_is_live_only_once_reconciled_promoted_and_running(obj, generation, live):
    assert RayServiceStatus.parse(obj).live(generation) is live
