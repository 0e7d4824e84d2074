"""Typed views of KubeRay status blocks (field names as in the v1.7.0 CRD status schemas)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_TERMINAL_JOB_STATUSES = {"SUCCEEDED", "FAILED", "STOPPED"}
_TERMINAL_DEPLOYMENT_STATUSES = {"Complete", "Failed", "ValidationFailed"}


class _Status(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class Condition(_Status):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None


class ServeApplication(_Status):
    status: str | None = None
    message: str | None = None
    deployments: dict[str, str] = Field(default_factory=dict, description="deployment -> status")


class RayServiceStatus(_Status):
    """``Ready`` is the RayService ``Ready`` condition; ``applications`` are the active cluster's Serve apps."""

    generation: int | None = Field(None, description="metadata.generation: the spec's version")
    observed_generation: int | None = Field(None, description="the generation the operator last reconciled")
    ready: bool
    reason: str | None
    message: str | None
    upgrading: bool
    applications: dict[str, ServeApplication]
    active_cluster: str | None
    pending_cluster: str | None
    serve_endpoints: int

    @classmethod
    def parse(cls, obj: dict) -> RayServiceStatus:
        status = obj.get("status") or {}
        conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]
        ready = next((c for c in conditions if c.type == "Ready"), None)
        upgrading = next((c for c in conditions if c.type == "UpgradeInProgress"), None)
        active = status.get("activeServiceStatus") or {}
        pending = status.get("pendingServiceStatus") or {}
        applications = {
            name: ServeApplication(status=app.get("status"), message=app.get("message"),
                                   deployments={d: (info or {}).get("status")
                                                for d, info in (app.get("serveDeploymentStatuses") or {}).items()})
            for name, app in (active.get("applicationStatuses") or {}).items()
        }
        return cls(generation=(obj.get("metadata") or {}).get("generation"),
                   observed_generation=status.get("observedGeneration"),
                   ready=bool(ready and ready.status == "True"), reason=ready.reason if ready else None,
                   message=ready.message if ready else None, upgrading=bool(upgrading and upgrading.status == "True"),
                   applications=applications, active_cluster=active.get("rayClusterName"),
                   pending_cluster=pending.get("rayClusterName"), serve_endpoints=status.get("numServeEndpoints", 0))

    def live(self, generation: int | None) -> bool:
        """The spec of ``generation`` (what an apply returned) is what serves: the operator has reconciled it, no
        new cluster is pending (under ``NewCluster`` the old one stays Ready until traffic moves), and every
        application of the active cluster is RUNNING."""
        seen = generation is None or (self.observed_generation or 0) >= generation
        return (seen and self.ready and not self.upgrading and self.pending_cluster is None
                and bool(self.applications) and all(a.status == "RUNNING" for a in self.applications.values()))

    def summary(self) -> str:
        apps = ", ".join(f"{name} {app.status}" for name, app in self.applications.items()) or "no applications"
        state = "Ready" if self.ready else f"not ready ({self.reason or 'no Ready condition yet'})"
        return f"{state}; {apps}; {self.serve_endpoints} Serve endpoint(s)" + (
            f"; upgrading to {self.pending_cluster}" if self.upgrading else "")


class RayJobStatus(_Status):
    deployment_status: str | None = Field(alias="jobDeploymentStatus", default=None)
    job_status: str | None = Field(alias="jobStatus", default=None)
    message: str | None = None
    reason: str | None = None
    cluster: str | None = Field(alias="rayClusterName", default=None)
    dashboard_url: str | None = Field(alias="dashboardURL", default=None)
    start_time: str | None = Field(alias="startTime", default=None)
    end_time: str | None = Field(alias="endTime", default=None)
    succeeded: int | None = None
    failed: int | None = None

    @classmethod
    def parse(cls, obj: dict) -> RayJobStatus:
        return cls.model_validate(obj.get("status") or {})

    @property
    def finished(self) -> bool:
        return self.job_status in _TERMINAL_JOB_STATUSES or self.deployment_status in _TERMINAL_DEPLOYMENT_STATUSES

    @property
    def succeeded_job(self) -> bool:
        return self.job_status == "SUCCEEDED"

    def summary(self) -> str:
        text = f"{self.deployment_status or 'New'} / job {self.job_status or 'not started'}"
        return text + (f": {self.message}" if self.message else "")


class RayClusterStatus(_Status):
    state: str | None = None
    reason: str | None = None
    ready_workers: int = Field(alias="readyWorkerReplicas", default=0)
    desired_workers: int = Field(alias="desiredWorkerReplicas", default=0)
    desired_gpu: str | None = Field(alias="desiredGPU", default=None)

    @classmethod
    def parse(cls, obj: dict) -> RayClusterStatus:
        return cls.model_validate(obj.get("status") or {})

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def summary(self) -> str:
        return f"{self.state or 'pending'}; workers {self.ready_workers}/{self.desired_workers} ready"
