"""Cluster environments (``configs/cluster/<env>.yaml``): what differs between dev and prod, and nothing else.

The Serve applications come from a Serve config file (``serve.config``), each model's training run from its
training config (``training.jobs.<model>.config``) and each precompute run from its batch config
(``batch.jobs.<set>.config``): the same files ``serve run``, ``python -m training.<model>`` and
``python -m batch.precompute`` use. An environment only lists the few adaptations a cluster needs (``serve.set``,
URIs), so the manifests cannot drift from them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ROOT / "configs" / "cluster"
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Toleration(_Strict):
    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str = "NoSchedule"


class Pods(_Strict):
    """Resources of one kind of Ray pod. Requests equal limits (Guaranteed QoS: no noisy neighbours)."""

    cpu: str
    memory: str
    gpus: int = Field(0, ge=0)
    node_selector: dict[str, str] = {}
    tolerations: list[Toleration] = []

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not _QUANTITY.match(value):
            raise ValueError(f"not a Kubernetes quantity: {value!r}")
        return value


class WorkerGroup(Pods):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    min_replicas: int = Field(ge=0)
    max_replicas: int = Field(ge=0)


class Serving(_Strict):
    config: Path = Field(description="Serve config file, relative to the repository")
    set: dict[str, object] = Field({}, description="dotted paths changed for the cluster, e.g. http_options.host")
    upgrade_strategy: str = "NewCluster"
    head: Pods
    workers: list[WorkerGroup]


# How the operator hands a RayJob's entrypoint to its cluster: K8sJobMode from a submitter pod (a Kubernetes Job,
# with its own retries and logs), HTTPMode from the operator itself through the head's dashboard (no extra pod).
SubmissionMode = Literal["K8sJobMode", "HTTPMode"]


class TrainingJob(_Strict):
    config: Path = Field(description="training config file, relative to the repository")
    data_uri: str


class Training(_Strict):
    """One RayJob per model (``jobs``: model name -> its config and data); store, code and cluster shapes shared."""

    jobs: dict[str, TrainingJob] = Field(min_length=1)
    code_archive: str = Field(description="URL template of a git archive zip, with {commit}")
    store_uri: str
    checkpoint_uri: str
    head: Pods
    workers: WorkerGroup
    active_deadline_seconds: int = Field(ge=1)
    ttl_seconds_after_finished: int = Field(ge=0)
    backoff_limit: int = Field(0, ge=0)
    submission_mode: SubmissionMode = "K8sJobMode"


class PrecomputeJob(_Strict):
    config: Path = Field(description="precompute config file (configs/batch/), relative to the repository")
    input_uri: str = Field(description="the trips to score")


class Batch(_Strict):
    """One RayJob per prediction set (``jobs``: set -> its config and input); code archive and model store are the
    training ones."""

    jobs: dict[str, PrecomputeJob] = Field(min_length=1)
    head: Pods
    workers: WorkerGroup
    active_deadline_seconds: int = Field(ge=1)
    ttl_seconds_after_finished: int = Field(ge=0)
    backoff_limit: int = Field(0, ge=0)
    submission_mode: SubmissionMode = "K8sJobMode"


class Interactive(_Strict):
    head: Pods
    workers: list[WorkerGroup]


class Hdfs(_Strict):
    """How Ray pods reach HDFS: rendered into a ConfigMap mounted as HADOOP_CONF_DIR."""

    default_fs: str = Field(description="fs.defaultFS, e.g. hdfs://travel-hdfs")
    nameservice: str | None = None
    namenodes: dict[str, str] = Field({}, description="NameNode id -> host:port for an HA name service")
    failover_max_attempts: int = Field(3, ge=1, description="client retries per call; replicas retry on top")
    authentication: str = Field("simple", pattern="^(simple|kerberos)$")
    credentials_secret: str = Field(description="Secret with key `user` (HADOOP_USER_NAME); not rendered")


class Monitoring(_Strict):
    """Scraping of the Ray pods' metrics ports by a Prometheus Operator (README, Observability): a PodMonitor, which
    needs the operator's CRD on the cluster, hence off unless the environment says so."""

    pod_monitor: bool = Field(False, description="render a PodMonitor for every Ray pod of this environment")
    prometheus_namespace: str = Field("monitoring", description="where Prometheus runs: the NetworkPolicy lets it "
                                                                "reach the metrics port")
    labels: dict[str, str] = Field({}, description="labels the Prometheus' podMonitorSelector selects")
    interval: str = Field("15s", pattern=r"^[0-9]+(ms|s|m)$", description="scrape interval")


class Environment(_Strict):
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", description="base name of every resource")
    namespace: str
    image: str = Field(description="Ray + TensorFlow + this project; no model (it comes from HDFS)")
    ray_version: str
    kubernetes_version: str = Field("1.32.0", description="for validating built-in kinds")
    kuberay_operator_namespace: str = Field(description="the operator calls the dashboard from there")
    labels: dict[str, str] = {}
    ray_auth_secret: str = Field(description="Secret holding `auth_token`; `cluster deploy` creates it if missing")
    serve_port: int = 8000
    serving: Serving
    training: Training
    batch: Batch
    interactive: Interactive
    hdfs: Hdfs
    monitoring: Monitoring = Monitoring()


def load(env: str) -> Environment:
    """The environment ``env`` (a name under configs/cluster, or a path to a YAML file)."""
    path = Path(env) if env.endswith((".yaml", ".yml")) else ENVIRONMENTS / f"{env}.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        known = sorted(p.stem for p in ENVIRONMENTS.glob("*.yaml"))
        raise ConfigError(f"{path}: cannot read environment ({err.strerror}); known: {known}") from err
    try:
        return Environment.model_validate(raw)
    except pydantic.ValidationError as err:
        raise ConfigError.from_validation(err, str(path)) from err
