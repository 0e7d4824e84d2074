"""Render an environment's Kubernetes objects: Namespace, HDFS ConfigMap, NetworkPolicy, RayService, a training
RayJob per model, a precompute RayJob per prediction set, RayCluster.

One source, in Python: the RayService's ``serveConfigV2`` *is* the Serve config file of the environment (with the
environment's listed ``serve.set`` changes), each RayJob runs its training or batch config, and every Ray pod shares
one pod template builder, so security settings and HDFS wiring cannot differ between resources. Secrets are
referenced, never rendered.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import PurePosixPath

import yaml

from cluster.environments import ROOT, Batch, Environment, Pods, Training, WorkerGroup
from cluster.resources import POD_MONITOR, RAY_CLUSTER, RAY_JOB, RAY_SERVICE
from recsys.errors import ConfigError
from recsys.loaded_model import split_model_uri
from recsys.manifest import check_name
from serve_apps.core.ingress import haproxy_environment

HADOOP_CONF_DIR = "/etc/hadoop/conf"
PROJECT_DIR = PurePosixPath("/home/ray/travel-recsys")  # where the Dockerfile puts this project in the image
MODEL_CACHE_DIR = "/var/cache/recsys-models"
METRICS_PORT = 8080  # Ray's Prometheus metrics on every Ray pod, as `make run` has it on loopback
INGRESS_METRICS_PORT = 9101  # HAProxy's own exporter on the serving workers (Ray's default, stated)
RAY_UID, RAY_GID = 1000, 100  # the `ray` user of the rayproject images
PART_OF = "travel-recsys"
TRAINING_ENTRYPOINT = "python -m training.{model} --config {config}"
PRECOMPUTE_ENTRYPOINT = "python -m batch.precompute --config {config}"


def render(env: Environment, commit: str, model_versions: Mapping[str, str] | None = None) -> list[dict]:
    """Every object of ``env``, in apply order. ``commit`` pins the training code (a git archive of it);
    ``model_versions`` pins served models (by model name) instead of the Serve config's own ``model_version``."""
    return [
        namespace(env),
        hadoop_config_map(env),
        network_policy(env),
        ray_service(env, model_versions),
        *(training_job(env, model, commit) for model in env.training.jobs),
        *(precompute_job(env, predictions, commit) for predictions in env.batch.jobs),
        ray_cluster(env),
        *([pod_monitor(env)] if env.monitoring.pod_monitor else []),
    ]


def serve_config(env: Environment, model_versions: Mapping[str, str] | None = None) -> dict:
    """The Serve config the RayService runs: the environment's Serve config file with its ``serve.set`` changes."""
    config = yaml.safe_load((ROOT / env.serving.config).read_text())
    for path, value in env.serving.set.items():
        try:
            _set(config, path, value)
        except (KeyError, IndexError, ValueError, TypeError) as err:
            raise ConfigError(f"serving.set.{path}: no such setting in {env.serving.config}") from err
    served = {}
    for application in config["applications"]:
        for deployment in application.get("deployments", []):
            model_uri = (deployment.get("user_config") or {}).get("model_uri")
            if model_uri:
                served.setdefault(split_model_uri(model_uri)[1], []).append(deployment["user_config"])
    for model, version in (model_versions or {}).items():
        if model not in served:
            raise ConfigError(f"model version {model}={version}: no application of {env.serving.config} serves "
                              f"a model named {model!r}; it serves {', '.join(sorted(served))}")
        try:
            check_name("model_version", version)
        except ValueError as err:
            raise ConfigError(f"model version {model}={version}: {err}") from err
        for user_config in served[model]:
            user_config["model_version"] = version
    return config


def namespace(env: Environment) -> dict:
    # The restricted Pod Security Standard is enforced, not just hoped for: the API server rejects any pod of
    # this namespace that is not non-root, seccomp RuntimeDefault, without privilege escalation, capabilities dropped.
    pss = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": env.namespace, "labels": {**labels(env, "namespace"), **pss}}}


def hadoop_config_map(env: Environment) -> dict:
    core = {"fs.defaultFS": env.hdfs.default_fs, "hadoop.security.authentication": env.hdfs.authentication}
    hdfs = {"dfs.client.failover.max.attempts": str(env.hdfs.failover_max_attempts)}
    if env.hdfs.nameservice:
        ns = env.hdfs.nameservice
        hdfs.update({"dfs.nameservices": ns, f"dfs.ha.namenodes.{ns}": ",".join(env.hdfs.namenodes),
                     f"dfs.client.failover.proxy.provider.{ns}":
                         "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider"})
        hdfs.update({f"dfs.namenode.rpc-address.{ns}.{nn}": address for nn, address in env.hdfs.namenodes.items()})
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(env, f"{env.name}-hadoop-conf", "hdfs-client"),
            "data": {"core-site.xml": _hadoop_xml(core), "hdfs-site.xml": _hadoop_xml(hdfs)}}


def network_policy(env: Environment) -> dict:
    """Ray's dashboard, GCS and internal ports answer only pods of this namespace (and the KubeRay operator, which
    calls the dashboard); from other namespaces only the Serve port is reachable."""
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _metadata(env, f"{env.name}-ray", "network-policy"),
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/instance": env.name}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {}}]},
                {"from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": env.kuberay_operator_namespace}}}],
                 "ports": [{"protocol": "TCP", "port": 8265}]},
                {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": env.serve_port}]},
                *([{"from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": env.monitoring.prometheus_namespace}}}],
                    "ports": [{"protocol": "TCP", "port": port} for port in (METRICS_PORT, INGRESS_METRICS_PORT)]}]
                  if env.monitoring.pod_monitor else []),
            ],
        },
    }


def pod_monitor(env: Environment) -> dict:
    """Prometheus (through the Prometheus Operator) scrapes Ray's metrics port of every Ray pod of ``env`` (the
    serving replicas' application metrics, serve_apps.core.metrics; Serve's and Ray's own), and HAProxy's exporter
    on the serving workers (the pods that name its port): the requests HAProxy refuses itself (queue full or timed
    out) reach no replica, so only it counts them."""
    metadata = _metadata(env, f"{env.name}-ray", "monitoring")
    metadata["labels"].update(env.monitoring.labels)
    return {"apiVersion": POD_MONITOR.api_version, "kind": POD_MONITOR.kind, "metadata": metadata,
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/instance": env.name}},
                     "podMetricsEndpoints": [
                         {"port": "metrics", "path": "/metrics", "interval": env.monitoring.interval},
                         {"port": "ingress-metrics", "path": "/metrics", "interval": env.monitoring.interval}]}}


def ray_service(env: Environment, model_versions: Mapping[str, str] | None = None) -> dict:
    serving = env.serving
    config = serve_config(env, model_versions)
    # HAProxy direct ingress through the project's wrapper, which bounds HAProxy's queue with the limits the Serve
    # config sets (README, Reliability); its stats and metrics listeners stay on the pod's interfaces.
    haproxy = haproxy_environment(config, metrics_port=INGRESS_METRICS_PORT, loopback=False,
                                  wrapper=PROJECT_DIR / "serve_apps" / "haproxy_wrapper.py")
    spec = {
        "serveConfigV2": yaml.safe_dump(config, sort_keys=False),
        "upgradeStrategy": {"type": serving.upgrade_strategy},
        # Replicas run on workers only (the head advertises no CPUs), so the Serve Service skips the head.
        "excludeHeadPodFromServeSvc": True,
        "rayClusterConfig": _ray_cluster_spec(env, serving.head, serving.workers, "serving",
                                              serve_port=env.serve_port,
                                              extra_env=[{"name": k, "value": v} for k, v in sorted(haproxy.items())]),
    }
    return {"apiVersion": RAY_SERVICE.api_version, "kind": RAY_SERVICE.kind,
            "metadata": _metadata(env, env.name, "serving"), "spec": spec}


def training_job(env: Environment, model: str, commit: str, name: str | None = None) -> dict:
    """The RayJob that trains ``model`` (a key of ``training.jobs``) with the code of ``commit``."""
    training, job = env.training, env.training.jobs[model]
    return _ray_job(env, name or f"{env.name}-train-{model}-{commit[:7]}", "training", {"model": model}, commit,
                    TRAINING_ENTRYPOINT.format(model=model, config=job.config.as_posix()),
                    {"DATA_URI": job.data_uri, "MODEL_STORE_URI": training.store_uri,
                     "CHECKPOINT_URI": training.checkpoint_uri, "TF_USE_LEGACY_KERAS": "1"},
                    training)


def precompute_job(env: Environment, predictions: str, commit: str, name: str | None = None) -> dict:
    """The RayJob that precomputes ``predictions`` (a key of ``batch.jobs``) with the code of ``commit``."""
    job = env.batch.jobs[predictions]
    return _ray_job(env, name or f"{env.name}-score-{predictions}-{commit[:7]}", "precompute",
                    {"predictions": predictions}, commit, PRECOMPUTE_ENTRYPOINT.format(config=job.config.as_posix()),
                    {"INPUT_URI": job.input_uri, "MODEL_STORE_URI": env.training.store_uri}, env.batch)


def _ray_job(env: Environment, name: str, component: str, what: dict[str, str], commit: str, entrypoint: str,
             env_vars: dict[str, str], shape: Training | Batch) -> dict:
    """A RayJob running ``entrypoint`` in a cluster of its own with the code of ``commit``, gone when it ends."""
    runtime_env = {"working_dir": env.training.code_archive.format(commit=commit),
                   "env_vars": {**env_vars, "GIT_COMMIT": commit}}
    spec = {
        "entrypoint": entrypoint,
        "runtimeEnvYAML": yaml.safe_dump(runtime_env, sort_keys=False),
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": shape.ttl_seconds_after_finished,
        "activeDeadlineSeconds": shape.active_deadline_seconds,
        "backoffLimit": shape.backoff_limit,
        "submissionMode": shape.submission_mode,
        "rayClusterSpec": _ray_cluster_spec(env, shape.head, [shape.workers], component),
    }
    if shape.submission_mode == "K8sJobMode":
        submitter = {"name": "ray-job-submitter", "image": env.image,
                     "resources": _resources(Pods(cpu="500m", memory="512Mi")),
                     "env": _ray_auth_env(env), "securityContext": _container_security()}
        spec["submitterPodTemplate"] = {
            "metadata": {"labels": labels(env, f"{component}-submitter")},
            "spec": {"restartPolicy": "Never", "containers": [submitter], "securityContext": _pod_security(),
                     "automountServiceAccountToken": False}}
    job_labels = {**labels(env, component), **{f"recsys.travel.example/{key}": value for key, value in what.items()},
                  "recsys.travel.example/commit": commit}
    return {"apiVersion": RAY_JOB.api_version, "kind": RAY_JOB.kind,
            "metadata": {**_metadata(env, name, component), "labels": job_labels}, "spec": spec}


def ray_cluster(env: Environment) -> dict:
    return {"apiVersion": RAY_CLUSTER.api_version, "kind": RAY_CLUSTER.kind,
            "metadata": _metadata(env, f"{env.name}-interactive", "interactive"),
            "spec": _ray_cluster_spec(env, env.interactive.head, env.interactive.workers, "interactive")}


def _ray_cluster_spec(env: Environment, head: Pods, workers: list[WorkerGroup], component: str,
                      serve_port: int | None = None, extra_env: list[dict] | None = None) -> dict:
    # Ray's metrics port is fixed and named on every pod (KubeRay's default, stated), so a PodMonitor can find it.
    metrics = {"containerPort": METRICS_PORT, "name": "metrics"}
    ports = [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"},
             {"containerPort": 10001, "name": "client"}, metrics]
    if serve_port:
        ports.append({"containerPort": serve_port, "name": "serve"})
    head_template = _pod_template(env, head, "ray-head", component, ports, extra_env, service_account_token=True)
    return {
        "rayVersion": env.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "version": "v2", "idleTimeoutSeconds": 300, "upscalingMode": "Default",
            "resources": _resources(Pods(cpu="500m", memory="512Mi")),
            "securityContext": _container_security(),
        },
        "authOptions": {"mode": "token", "secretName": env.ray_auth_secret},
        "headGroupSpec": {
            "serviceType": "ClusterIP",
            # No GPUs and no CPUs advertised: the head runs Ray's control plane, never replicas or training.
            "rayStartParams": {"num-cpus": "0", "num-gpus": "0", "dashboard-host": "0.0.0.0",
                               "metrics-export-port": str(METRICS_PORT)},
            "template": head_template,
        },
        "workerGroupSpecs": [
            {
                "groupName": group.name,
                "replicas": group.min_replicas,
                "minReplicas": group.min_replicas,
                "maxReplicas": group.max_replicas,
                "rayStartParams": {"metrics-export-port": str(METRICS_PORT)},
                # Serve runs HAProxy on the nodes that hold replicas, the workers: its port and its exporter's.
                "template": _pod_template(env, group, "ray-worker", component, [metrics, *(
                    [{"containerPort": serve_port, "name": "serve"},
                     {"containerPort": INGRESS_METRICS_PORT, "name": "ingress-metrics"}] if serve_port else [])],
                                          extra_env),
            }
            for group in workers
        ],
    }


def _pod_template(env: Environment, pods: Pods, container_name: str, component: str, ports: list[dict],
                  extra_env: list[dict] | None, service_account_token: bool = False) -> dict:
    container = {
        "name": container_name,  # KubeRay treats containers[0] as the Ray container
        "image": env.image,
        "imagePullPolicy": "IfNotPresent",
        "resources": _resources(pods),
        "env": [
            {"name": "HADOOP_CONF_DIR", "value": HADOOP_CONF_DIR},
            {"name": "HADOOP_USER_NAME",
             "valueFrom": {"secretKeyRef": {"name": env.hdfs.credentials_secret, "key": "user"}}},
            {"name": "TF_USE_LEGACY_KERAS", "value": "1"},
            *(extra_env or []),
        ],
        "volumeMounts": [{"name": "hadoop-conf", "mountPath": HADOOP_CONF_DIR, "readOnly": True},
                         {"name": "model-cache", "mountPath": MODEL_CACHE_DIR}],
        "securityContext": _container_security(),
    }
    if ports:
        container["ports"] = ports
    spec = {
        "containers": [container],
        "securityContext": _pod_security(),
        # Only the head talks to the API server (the autoscaler sidecar); workers get no token.
        "automountServiceAccountToken": service_account_token,
        "volumes": [{"name": "hadoop-conf", "configMap": {"name": f"{env.name}-hadoop-conf"}},
                    {"name": "model-cache", "emptyDir": {"sizeLimit": "20Gi"}}],
    }
    if pods.node_selector:
        spec["nodeSelector"] = dict(pods.node_selector)
    if pods.tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in pods.tolerations]
    return {"metadata": {"labels": labels(env, component)}, "spec": spec}


def _resources(pods: Pods) -> dict:
    amounts = {"cpu": pods.cpu, "memory": pods.memory}
    if pods.gpus:
        amounts["nvidia.com/gpu"] = str(pods.gpus)
    # Requests equal limits: Guaranteed QoS, so a busy neighbour cannot slow a replica or starve a GPU worker.
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": RAY_UID, "runAsGroup": RAY_GID, "fsGroup": RAY_GID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _ray_auth_env(env: Environment) -> list[dict]:
    return [{"name": "RAY_AUTH_MODE", "value": "token"},
            {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": env.ray_auth_secret,
                                                                      "key": "auth_token"}}}]


def labels(env: Environment, component: str) -> dict:
    """The labels of every object rendered for ``env``; ``component`` says which part (serving, training, ...)."""
    return {**env.labels, "app.kubernetes.io/name": PART_OF, "app.kubernetes.io/instance": env.name,
            "app.kubernetes.io/component": component, "app.kubernetes.io/part-of": PART_OF}


def _metadata(env: Environment, name: str, component: str) -> dict:
    return {"name": name, "namespace": env.namespace, "labels": labels(env, component)}


def _hadoop_xml(properties: dict[str, str]) -> str:
    rows = "".join(f"  <property><name>{k}</name><value>{v}</value></property>\n" for k, v in properties.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{rows}</configuration>\n'


def _set(config: dict, dotted: str, value: object) -> None:
    """Set ``a.b.0.c`` in nested dicts and lists; every step must exist, so a typo fails instead of adding keys."""
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = copy.deepcopy(value)
    elif last in node:
        node[last] = copy.deepcopy(value)
    else:
        raise KeyError(dotted)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (serveConfigV2, runtimeEnvYAML, Hadoop XML) as readable block literals."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def to_yaml(objects: list[dict]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)
