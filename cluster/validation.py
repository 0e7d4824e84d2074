"""Every rule a rendered manifest must pass, in one place.

:func:`validate_manifests` runs three checks on each object: custom resources (KubeRay's, a PodMonitor) are admitted
against the CRD schemas the way the API server does it (``crd_schema.admit``); built-in kinds are validated against
the Kubernetes schemas (``kubernetes-validate``); and the rules below, which no schema encodes: the KubeRay
operator's own checks (its ``validation.go``), this project's policies (security, GPUs, pinned code), and that a
PodMonitor scrapes pods the manifests define, on a port they name.

Each rule is one small pure function, object in, problems out, no clients. Messages read
``<field.path>: <problem>, got <value>; <fix>``. RayService and RayJob run the RayCluster rules on their
embedded cluster spec, under its path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import kubernetes_validate
import pydantic
import yaml

from cluster.crd_schema import CrdSchemas, admit
from cluster.errors import ClusterError
from cluster.resources import POD_MONITOR, RAY_CLUSTER, RAY_JOB, RAY_SERVICE, custom_kind, kuberay_kind
from serve_apps.applications import APPLICATIONS
from serve_apps.core.settings import AUTOSCALING_POLICY, ModelSettings, TripsOptions

ClusterRule = Callable[[dict, str], Iterator[str]]
ObjectRule = Callable[[dict], Iterator[str]]

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_RESOURCE_START_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")
_UPGRADE_TYPES = ("NewCluster", "NewClusterWithIncrementalUpgrade", "None")
_MIN_AUTH_RAY_VERSION = (2, 52, 0)
_PINNED_ARCHIVE = re.compile(r"^https://\S+/[0-9a-f]{40}\.zip$")
_GPU = "nvidia.com/gpu"


# -- RayCluster specs (also embedded in RayService and RayJob) -------------------------------------------------

def _groups(spec: dict, path: str) -> Iterator[tuple[str, str, dict]]:
    """(label, path, group) for the head group and each worker group."""
    yield "head group", f"{path}.headGroupSpec", spec.get("headGroupSpec", {})
    for i, group in enumerate(spec.get("workerGroupSpecs", [])):
        yield f"worker group {group.get('groupName')!r}", f"{path}.workerGroupSpecs[{i}]", group


def _pod_spec(group: dict) -> dict:
    return group.get("template", {}).get("spec", {})


def rule_groups_have_containers(spec: dict, path: str) -> Iterator[str]:
    for _, where, group in _groups(spec, path):
        if not _pod_spec(group).get("containers"):
            yield f"{where}.template.spec.containers: must have at least one container, got none; add the Ray container"


def rule_ray_container_first(spec: dict, path: str) -> Iterator[str]:
    # KubeRay configures containers[0] as the Ray container (RayContainerIndex); a sidecar listed first would
    # receive Ray's command, ports and environment instead.
    for _, where, group in _groups(spec, path):
        names = [c.get("name", "") for c in _pod_spec(group).get("containers", [])]
        if names and not names[0].startswith("ray-") and any(n.startswith("ray-") for n in names):
            ray = next(n for n in names if n.startswith("ray-"))
            yield (f"{where}.template.spec.containers[0]: must be the Ray container, got {names[0]!r}; "
                   f"move {ray!r} to the front")


def rule_min_not_above_max(spec: dict, path: str) -> Iterator[str]:
    for i, group in enumerate(spec.get("workerGroupSpecs", [])):
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if not (isinstance(low, int) and isinstance(high, int)):
            continue  # the schema check reports the type
        where = f"{path}.workerGroupSpecs[{i}]"
        if low > high:
            yield f"{where}.minReplicas: must not exceed maxReplicas ({high}), got {low}; lower minReplicas"
        replicas = group.get("replicas")
        if isinstance(replicas, int) and not low <= replicas <= high:
            yield (f"{where}.replicas: must lie within minReplicas..maxReplicas ({low}..{high}), got {replicas}; "
                   "the operator would clamp it")


def rule_resources_in_one_place(spec: dict, path: str) -> Iterator[str]:
    for label, where, group in _groups(spec, path):
        in_params = [k for k in _RESOURCE_START_PARAMS if group.get("rayStartParams", {}).get(k)]
        if in_params and group.get("resources"):
            yield (f"{where}.rayStartParams: {', '.join(in_params)} set here and in {where}.resources for the "
                   f"{label}, got both; use only one of them")


def rule_no_labels_in_start_params(spec: dict, path: str) -> Iterator[str]:
    for _, where, group in _groups(spec, path):
        if "labels" in group.get("rayStartParams", {}):
            yield (f"{where}.rayStartParams.labels: not supported, got {group['rayStartParams']['labels']!r}; "
                   f"use {where}.labels")


def rule_autoscaler_v2_restart_policy(spec: dict, path: str) -> Iterator[str]:
    if not (spec.get("enableInTreeAutoscaling") and spec.get("autoscalerOptions", {}).get("version") == "v2"):
        return
    for _, where, group in _groups(spec, path):
        policy = _pod_spec(group).get("restartPolicy")
        if policy not in (None, "", "Never"):
            yield (f"{where}.template.spec.restartPolicy: must be Never or unset with autoscaler v2, got "
                   f"{policy!r}; remove it")


def rule_autoscaler_version_set_once(spec: dict, path: str) -> Iterator[str]:
    head = _pod_spec(spec.get("headGroupSpec", {})).get("containers") or [{}]
    env = {e.get("name") for e in head[0].get("env", [])}
    if spec.get("autoscalerOptions", {}).get("version") and "RAY_enable_autoscaler_v2" in env:
        yield (f"{path}.headGroupSpec.template.spec.containers[0].env: RAY_enable_autoscaler_v2 set as well as "
               f"{path}.autoscalerOptions.version, got both; keep only autoscalerOptions.version")


def rule_no_suspended_groups_with_autoscaler(spec: dict, path: str) -> Iterator[str]:
    if not spec.get("enableInTreeAutoscaling"):
        return
    for i, group in enumerate(spec.get("workerGroupSpecs", [])):
        if group.get("suspend"):
            yield (f"{path}.workerGroupSpecs[{i}].suspend: a worker group cannot be suspended with the autoscaler "
                   "on, got true; remove suspend or disable enableInTreeAutoscaling")


def rule_token_auth(spec: dict, path: str) -> Iterator[str]:
    # Ray's Jobs API without authentication runs any code it is sent (CVE-2023-48022, "ShadowRay").
    auth = spec.get("authOptions", {})
    if auth.get("mode") != "token":
        yield f"{path}.authOptions.mode: must be token, got {auth.get('mode')!r}; set mode: token"
        return
    if not auth.get("secretName"):
        yield (f"{path}.authOptions.secretName: must name the token Secret, got none; set it so the token "
               "survives cluster re-creation")
    version = tuple(int(p) for p in re.findall(r"\d+", str(spec.get("rayVersion", "")))[:3])
    if len(version) < 3 or version < _MIN_AUTH_RAY_VERSION:
        yield (f"{path}.rayVersion: token authentication needs Ray 2.52.0 or later, got "
               f"{spec.get('rayVersion')!r}; set rayVersion")


def rule_head_advertises_no_gpus(spec: dict, path: str) -> Iterator[str]:
    params = spec.get("headGroupSpec", {}).get("rayStartParams", {})
    if params.get("num-gpus") != "0":
        yield (f"{path}.headGroupSpec.rayStartParams.num-gpus: must be \"0\" (the head runs no models), got "
               f"{params.get('num-gpus')!r}; set num-gpus: \"0\"")


def rule_head_service_cluster_ip(spec: dict, path: str) -> Iterator[str]:
    service_type = spec.get("headGroupSpec", {}).get("serviceType", "ClusterIP")
    if service_type != "ClusterIP":
        yield (f"{path}.headGroupSpec.serviceType: must be ClusterIP (dashboard and GCS stay inside the cluster), "
               f"got {service_type!r}; expose Serve through the Serve Service instead")


def rule_requests_equal_limits(spec: dict, path: str) -> Iterator[str]:
    for _, where, group in _groups(spec, path):
        for j, container in enumerate(_pod_spec(group).get("containers", [])):
            resources = container.get("resources", {})
            if resources.get("requests") != resources.get("limits"):
                yield (f"{where}.template.spec.containers[{j}].resources: requests must equal limits, got "
                       f"requests {resources.get('requests')} and limits {resources.get('limits')}; copy the limits")


def rule_gpu_groups_tolerate_gpu_nodes(spec: dict, path: str) -> Iterator[str]:
    for _, where, group in _groups(spec, path):
        pod = _pod_spec(group)
        wants_gpu = any(_GPU in c.get("resources", {}).get("limits", {}) for c in pod.get("containers", []))
        if wants_gpu and not any(t.get("key") == _GPU for t in pod.get("tolerations", [])):
            yield (f"{where}.template.spec.tolerations: a GPU group must tolerate the GPU node taint, got "
                   f"{pod.get('tolerations', [])}; add a toleration for {_GPU}")


def rule_restricted_pod_security(spec: dict, path: str) -> Iterator[str]:
    for _, where, group in _groups(spec, path):
        yield from pod_security_problems(_pod_spec(group), f"{where}.template.spec")


def pod_security_problems(pod: dict, where: str) -> Iterator[str]:
    """The restricted Pod Security Standard, for one pod spec."""
    security = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            yield f"{where}.{field}: not allowed, got true; remove it"
    if security.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        yield (f"{where}.securityContext.seccompProfile.type: must be RuntimeDefault, got "
               f"{security.get('seccompProfile', {}).get('type')!r}; set it")
    for j, container in enumerate(pod.get("containers", []) + pod.get("initContainers", [])):
        context = container.get("securityContext", {})
        at = f"{where}.containers[{j}].securityContext"
        if not (security.get("runAsNonRoot") or context.get("runAsNonRoot")):
            yield f"{at}.runAsNonRoot: must be true, got {context.get('runAsNonRoot')!r}; run as the ray user"
        if context.get("allowPrivilegeEscalation") is not False:
            yield (f"{at}.allowPrivilegeEscalation: must be false, got "
                   f"{context.get('allowPrivilegeEscalation')!r}; set it to false")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            yield f"{at}.capabilities.drop: must include ALL, got {context.get('capabilities', {}).get('drop')}; drop ALL"
        if context.get("privileged"):
            yield f"{at}.privileged: not allowed, got true; remove it"
    for volume in pod.get("volumes", []):
        if "hostPath" in volume:
            yield f"{where}.volumes.{volume.get('name')}: hostPath volumes are not allowed; use an emptyDir"


CLUSTER_RULES: list[ClusterRule] = [
    rule_groups_have_containers, rule_ray_container_first, rule_min_not_above_max, rule_resources_in_one_place,
    rule_no_labels_in_start_params, rule_autoscaler_v2_restart_policy, rule_autoscaler_version_set_once,
    rule_no_suspended_groups_with_autoscaler, rule_token_auth, rule_head_advertises_no_gpus,
    rule_head_service_cluster_ip, rule_requests_equal_limits, rule_gpu_groups_tolerate_gpu_nodes,
    rule_restricted_pod_security,
]


# -- Objects ---------------------------------------------------------------------------------------------------

def rule_name(obj: dict) -> Iterator[str]:
    kind = kuberay_kind(obj)
    name = obj.get("metadata", {}).get("name", "")
    if kind and len(name) > kind.max_name_length:
        yield (f"metadata.name: {kind.kind} names must be at most {kind.max_name_length} characters (the operator "
               f"appends suffixes), got {name!r} ({len(name)}); shorten it")
    if not _DNS1035.match(name) or len(name) > 63:
        yield f"metadata.name: must be a DNS-1035 label (a-z, 0-9, '-', starting with a letter), got {name!r}; rename it"


def rule_upgrade_strategy(obj: dict) -> Iterator[str]:
    strategy = obj["spec"].get("upgradeStrategy", {})
    kind = strategy.get("type")
    if kind is not None and kind not in _UPGRADE_TYPES:
        yield f"spec.upgradeStrategy.type: must be one of {', '.join(_UPGRADE_TYPES)}, got {kind!r}; pick one"
    if kind == "NewClusterWithIncrementalUpgrade":
        if not obj["spec"].get("rayClusterConfig", {}).get("enableInTreeAutoscaling"):
            yield ("spec.upgradeStrategy.type: NewClusterWithIncrementalUpgrade needs the Ray autoscaler, got "
                   "enableInTreeAutoscaling off; turn it on")
        options = strategy.get("clusterUpgradeOptions") or {}
        if not options.get("gatewayClassName"):
            yield ("spec.upgradeStrategy.clusterUpgradeOptions.gatewayClassName: required for "
                   "NewClusterWithIncrementalUpgrade, got none; name the Gateway class")


def rule_head_service_unnamed(obj: dict) -> Iterator[str]:
    name = obj["spec"].get("rayClusterConfig", {}).get("headGroupSpec", {}).get("headService", {}) \
        .get("metadata", {}).get("name")
    if name:
        yield (f"spec.rayClusterConfig.headGroupSpec.headService.metadata.name: must not be set (each cluster of "
               f"an upgrade needs its own), got {name!r}; remove it")


def rule_serve_config(obj: dict) -> Iterator[str]:
    from ray.serve.schema import ServeDeploySchema

    text = obj["spec"].get("serveConfigV2")
    try:
        config = yaml.safe_load(text or "")
        ServeDeploySchema.model_validate(config)
    except (yaml.YAMLError, ValueError) as err:
        yield f"spec.serveConfigV2: not a valid Serve config, got an error: {str(err).splitlines()[0]}; fix the file"
        return
    host = (config.get("http_options") or {}).get("host")
    if host != "0.0.0.0":
        yield (f"spec.serveConfigV2.http_options.host: must be 0.0.0.0 in a pod (the Serve Service and probes "
               f"reach it from outside the container), got {host!r}; set it")


def rule_autoscaling_on_demand(obj: dict) -> Iterator[str]:
    # HAProxy caps what a replica has in flight (max_ongoing_requests, fewer while it is slow) and refuses what its
    # queue has no room for: Serve's default policy, which counts requests in flight, would not see an overload.
    try:
        config = yaml.safe_load(obj["spec"].get("serveConfigV2") or "") or {}
    except yaml.YAMLError:
        return  # rule_serve_config reports it
    for application in config.get("applications") or []:
        for deployment in application.get("deployments") or []:
            autoscaling = deployment.get("autoscaling_config")
            if autoscaling is None:
                continue
            policy = (autoscaling.get("policy") or {}).get("policy_function", "the default policy")
            if policy != AUTOSCALING_POLICY:
                yield (f"spec.serveConfigV2.applications.{application.get('name')}.deployments."
                       f"{deployment.get('name')}.autoscaling_config.policy.policy_function: must be "
                       f"{AUTOSCALING_POLICY} behind HAProxy (its limits cap the requests in flight other policies "
                       f"count), got {policy!r}; set it")


def rule_serve_applications(obj: dict) -> Iterator[str]:
    # Serve imports an application only when it deploys it: a wrong import path, an args typo or a model
    # user_config error would surface as a failing app on the cluster, minutes after `deploy`.
    try:
        config = yaml.safe_load(obj["spec"].get("serveConfigV2") or "") or {}
    except yaml.YAMLError:
        return  # rule_serve_config reports it
    applications = config.get("applications") or []
    names = {application.get("name") for application in applications}
    for application in applications:
        where = f"spec.serveConfigV2.applications.{application.get('name')}"
        options_type = APPLICATIONS.get(application.get("import_path"))
        if options_type is None:
            yield (f"{where}.import_path: not an application of this project, got "
                   f"{application.get('import_path')!r}; use one of {', '.join(sorted(APPLICATIONS))}")
            continue
        try:
            options = options_type.model_validate(application.get("args") or {})
        except pydantic.ValidationError as err:
            yield from _pydantic_problems(err, f"{where}.args")
            continue
        if isinstance(options, TripsOptions):
            for field in ("destinations_app", "accommodations_app"):
                if getattr(options, field) not in names:
                    yield (f"{where}.args.{field}: no application of that name in this config, got "
                           f"{getattr(options, field)!r}; name one of {', '.join(sorted(map(str, names)))}")
            continue
        for deployment in application.get("deployments") or []:
            try:
                ModelSettings.model_validate(deployment.get("user_config") or {})
            except pydantic.ValidationError as err:
                yield from _pydantic_problems(err, f"{where}.deployments.{deployment.get('name')}.user_config")


def _pydantic_problems(err: pydantic.ValidationError, where: str) -> Iterator[str]:
    for problem in err.errors():
        field = ".".join(map(str, problem["loc"]))
        yield f"{where}.{field}: {problem['msg']}, got {problem.get('input')!r}; fix the Serve config"


def rule_serve_gpus_fit_the_cluster(obj: dict) -> Iterator[str]:
    # Ray schedules GPU fractions only where GPUs are: replicas beyond the worker groups' cards stay pending, and
    # the model that scales up last under load is the one that cannot.
    try:
        config = yaml.safe_load(obj["spec"].get("serveConfigV2") or "") or {}
    except yaml.YAMLError:
        return  # rule_serve_config reports it
    demand = []
    for application in config.get("applications") or []:
        for deployment in application.get("deployments") or []:
            share = float((deployment.get("ray_actor_options") or {}).get("num_gpus") or 0)
            replicas = (deployment.get("autoscaling_config") or {}).get("max_replicas",
                                                                         deployment.get("num_replicas", 1))
            if share:
                demand.append((f"{application.get('name')}.{deployment.get('name')}", share * int(replicas)))
    cluster = obj["spec"].get("rayClusterConfig") or {}
    capacity = sum(int(group.get("maxReplicas", group.get("replicas", 0))) * _gpus(group)
                   for group in cluster.get("workerGroupSpecs") or [])
    needed = sum(gpus for _, gpus in demand)
    if needed > capacity:
        parts = ", ".join(f"{name} {gpus:g}" for name, gpus in demand)
        yield (f"spec.serveConfigV2: replicas at their max_replicas need {needed:g} GPUs ({parts}), the worker "
               f"groups have at most {capacity}; lower max_replicas or num_gpus, or add GPU workers")


def _gpus(group: dict) -> int:
    containers = _pod_spec(group).get("containers") or [{}]
    return int((containers[0].get("resources") or {}).get("limits", {}).get(_GPU, 0))


def rule_deletion_delay(obj: dict) -> Iterator[str]:
    delay = obj["spec"].get("rayClusterDeletionDelaySeconds")
    if delay is not None and delay < 0:
        yield f"spec.rayClusterDeletionDelaySeconds: must be non-negative, got {delay}; use 0 or more"


def rule_ttl_needs_shutdown(obj: dict) -> Iterator[str]:
    spec = obj["spec"]
    ttl = spec.get("ttlSecondsAfterFinished", 0)
    if ttl < 0:
        yield f"spec.ttlSecondsAfterFinished: must be non-negative, got {ttl}; use 0 or more"
    if ttl > 0 and not spec.get("shutdownAfterJobFinishes"):
        yield (f"spec.ttlSecondsAfterFinished: needs shutdownAfterJobFinishes, got {ttl} with shutdown off; "
               "set shutdownAfterJobFinishes: true")


def rule_job_cluster(obj: dict) -> Iterator[str]:
    spec = obj["spec"]
    if not spec.get("rayClusterSpec") and not spec.get("clusterSelector"):
        yield "spec.rayClusterSpec: one of rayClusterSpec or clusterSelector must be set, got neither; add one"
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        yield ("spec.suspend: a RayJob can be suspended only with shutdownAfterJobFinishes, got it off; "
               "set shutdownAfterJobFinishes: true")


def rule_job_limits(obj: dict) -> Iterator[str]:
    spec = obj["spec"]
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        yield f"spec.activeDeadlineSeconds: must be positive, got {deadline}; give the job a time limit"
    backoff = spec.get("backoffLimit")
    if backoff is not None and backoff < 0:
        yield f"spec.backoffLimit: must be non-negative, got {backoff}; use 0 or more"
    if spec.get("submissionMode") == "InteractiveMode" and (backoff or 0) > 0:
        yield f"spec.backoffLimit: not supported in InteractiveMode, got {backoff}; use 0"


def rule_runtime_env(obj: dict) -> Iterator[str]:
    text = obj["spec"].get("runtimeEnvYAML", "")
    try:
        runtime_env = yaml.safe_load(text) if text else {}
    except yaml.YAMLError as err:
        yield f"spec.runtimeEnvYAML: not valid YAML, got an error: {str(err).splitlines()[0]}; fix it"
        return
    if not isinstance(runtime_env, dict):
        yield f"spec.runtimeEnvYAML: must be a mapping, got {type(runtime_env).__name__}; write key: value pairs"
        return
    working_dir = runtime_env.get("working_dir", "")
    if not _PINNED_ARCHIVE.match(str(working_dir)):
        yield (f"spec.runtimeEnvYAML.working_dir: must be an https git archive zip of a pinned commit (40 hex), "
               f"got {working_dir!r}; render with --commit")


def rule_submitter_security(obj: dict) -> Iterator[str]:
    if obj["spec"].get("submissionMode", "K8sJobMode") != "K8sJobMode":
        return  # no submitter pod: the operator submits through the dashboard
    template = obj["spec"].get("submitterPodTemplate")
    if template is None:
        yield ("spec.submitterPodTemplate: must be set so the submitter pod passes the restricted Pod Security "
               "Standard, got none; add it")
        return
    yield from pod_security_problems(template.get("spec", {}), "spec.submitterPodTemplate.spec")


OBJECT_RULES: dict[str, list[ObjectRule]] = {
    RAY_CLUSTER.kind: [rule_name],
    RAY_SERVICE.kind: [rule_name, rule_upgrade_strategy, rule_head_service_unnamed, rule_serve_config,
                       rule_serve_applications, rule_serve_gpus_fit_the_cluster,
                       rule_autoscaling_on_demand, rule_deletion_delay],
    RAY_JOB.kind: [rule_name, rule_ttl_needs_shutdown, rule_job_cluster, rule_job_limits, rule_runtime_env,
                   rule_submitter_security],
}
EMBEDDED_CLUSTER = {RAY_CLUSTER.kind: "spec", RAY_SERVICE.kind: "spec.rayClusterConfig",
                    RAY_JOB.kind: "spec.rayClusterSpec"}


def rule_pod_monitor_targets(pod_monitor: dict, objects: list[dict]) -> Iterator[str]:
    """A PodMonitor selects pod templates of the manifests, and each endpoint's port is named in at least one of them
    (Prometheus scrapes an endpoint on the pods that name its port: Ray's metrics port is on every Ray pod, HAProxy's
    exporter only on the serving workers)."""
    selector = pod_monitor["spec"].get("selector", {}).get("matchLabels", {})
    templates = [template for obj in objects for template in _pod_templates(obj)
                 if selector and selector.items() <= template.get("metadata", {}).get("labels", {}).items()]
    if not templates:
        yield (f"spec.selector.matchLabels: selects no Ray pod of these manifests, got {selector}; use the labels "
               "of the Ray pod templates")
        return
    for i, endpoint in enumerate(pod_monitor["spec"].get("podMetricsEndpoints", [])):
        port = endpoint.get("port")
        if not any(port in {p.get("name") for c in t["spec"]["containers"] for p in c.get("ports", [])}
                   for t in templates):
            yield (f"spec.podMetricsEndpoints[{i}].port: none of the {len(templates)} selected pod templates names a "
                   f"port {port!r}; name the metrics port of the Ray container so")


def _pod_templates(obj: dict) -> Iterator[dict]:
    kind = kuberay_kind(obj)
    if kind is None:
        return
    spec = obj
    for part in EMBEDDED_CLUSTER[kind.kind].split("."):
        spec = spec.get(part) or {}
    if spec:
        yield spec["headGroupSpec"]["template"]
        yield from (group["template"] for group in spec.get("workerGroupSpecs", []))


def semantic_problems(obj: dict) -> list[str]:
    """Problems found by the operator's rules and this project's policies (KubeRay resources only)."""
    kind = kuberay_kind(obj)
    if kind is None:
        return []
    problems = [p for rule in OBJECT_RULES[kind.kind] for p in rule(obj)]
    path = EMBEDDED_CLUSTER[kind.kind]
    spec = obj
    for part in path.split("."):
        spec = spec.get(part) or {}
    if spec:
        problems += [p for rule in CLUSTER_RULES for p in rule(spec, path)]
    return problems


def validate_manifests(objects: list[dict], schemas: CrdSchemas, kubernetes_version: str) -> list[str]:
    """All problems of all objects, each prefixed with ``Kind/name``; empty when everything passes."""
    problems = []
    for obj in objects:
        label = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        kind = custom_kind(obj)
        if kind is not None:
            try:
                schema = schemas.schema(kind.kind, kind.version)
            except ClusterError as err:
                problems.append(f"{label}: {err}")
                continue
            _, schema_problems = admit(obj, schema)
            problems += [f"{label}: {p}" for p in schema_problems + semantic_problems(obj)]
            if kind is POD_MONITOR:
                problems += [f"{label}: {p}" for p in rule_pod_monitor_targets(obj, objects)]
        else:
            try:
                kubernetes_validate.validate(obj, kubernetes_version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(str(p) for p in err.path) or "(object)"
                problems.append(f"{label}: {where}: {err.message}")
            except kubernetes_validate.SchemaNotFoundError as err:
                problems.append(f"{label}: no Kubernetes {kubernetes_version} schema for this kind: {err}")
    return problems
