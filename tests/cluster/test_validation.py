"""Every rule has a passing case (the rendered manifests) and a failing case with its exact message."""

from __future__ import annotations

import copy

import pytest
import yaml

from cluster import environments, manifests, validation
from cluster.validation import semantic_problems, validate_manifests
from tests.cluster.conftest import COMMIT

PROD = environments.load("prod")
RENDERED = {obj["kind"]: obj for obj in manifests.render(PROD, COMMIT)}


def changed(kind: str, change) -> dict:
    obj = copy.deepcopy(RENDERED[kind])
    change(obj)
    return obj


def head(obj):
    return obj["spec"]["headGroupSpec"]


def worker(obj, i=0):
    return obj["spec"]["workerGroupSpecs"][i]


def ray_container(group):
    return group["template"]["spec"]["containers"][0]


CLUSTER_CASES = [
    ("groups-have-containers", validation.rule_groups_have_containers,
     lambda o: head(o)["template"]["spec"].update(containers=[]),
     "spec.headGroupSpec.template.spec.containers: must have at least one container, got none; add the Ray container"),
    ("ray-container-first", validation.rule_ray_container_first,
     lambda o: worker(o)["template"]["spec"]["containers"].insert(0, {"name": "log-shipper", "image": "fluent-bit"}),
     "spec.workerGroupSpecs[0].template.spec.containers[0]: must be the Ray container, got 'log-shipper'; "
     "move 'ray-worker' to the front"),
    ("min-not-above-max", validation.rule_min_not_above_max,
     lambda o: worker(o).update(minReplicas=5, maxReplicas=2, replicas=2),
     "spec.workerGroupSpecs[0].minReplicas: must not exceed maxReplicas (2), got 5; lower minReplicas"),
    ("replicas-within-bounds", validation.rule_min_not_above_max,
     lambda o: worker(o).update(replicas=9),
     "spec.workerGroupSpecs[0].replicas: must lie within minReplicas..maxReplicas (0..8), got 9; "
     "the operator would clamp it"),
    ("resources-in-one-place", validation.rule_resources_in_one_place,
     lambda o: head(o).update(resources={"CPU": "2"}),
     "spec.headGroupSpec.rayStartParams: num-cpus, num-gpus set here and in spec.headGroupSpec.resources for the "
     "head group, got both; use only one of them"),
    ("no-labels-in-start-params", validation.rule_no_labels_in_start_params,
     lambda o: worker(o)["rayStartParams"].update(labels="zone=a"),
     "spec.workerGroupSpecs[0].rayStartParams.labels: not supported, got 'zone=a'; "
     "use spec.workerGroupSpecs[0].labels"),
    ("autoscaler-v2-restart-policy", validation.rule_autoscaler_v2_restart_policy,
     lambda o: head(o)["template"]["spec"].update(restartPolicy="Always"),
     "spec.headGroupSpec.template.spec.restartPolicy: must be Never or unset with autoscaler v2, got 'Always'; "
     "remove it"),
    ("autoscaler-version-set-once", validation.rule_autoscaler_version_set_once,
     lambda o: ray_container(head(o))["env"].append({"name": "RAY_enable_autoscaler_v2", "value": "1"}),
     "spec.headGroupSpec.template.spec.containers[0].env: RAY_enable_autoscaler_v2 set as well as "
     "spec.autoscalerOptions.version, got both; keep only autoscalerOptions.version"),
    ("no-suspend-with-autoscaler", validation.rule_no_suspended_groups_with_autoscaler,
     lambda o: worker(o).update(suspend=True),
     "spec.workerGroupSpecs[0].suspend: a worker group cannot be suspended with the autoscaler on, got true; "
     "remove suspend or disable enableInTreeAutoscaling"),
    ("token-auth-on", validation.rule_token_auth,
     lambda o: o["spec"]["authOptions"].update(mode="disabled"),
     "spec.authOptions.mode: must be token, got 'disabled'; set mode: token"),
    ("token-auth-secret", validation.rule_token_auth,
     lambda o: o["spec"]["authOptions"].pop("secretName"),
     "spec.authOptions.secretName: must name the token Secret, got none; set it so the token survives cluster "
     "re-creation"),
    ("token-auth-ray-version", validation.rule_token_auth,
     lambda o: o["spec"].update(rayVersion="2.50.1"),
     "spec.rayVersion: token authentication needs Ray 2.52.0 or later, got '2.50.1'; set rayVersion"),
    ("head-no-gpus", validation.rule_head_advertises_no_gpus,
     lambda o: head(o)["rayStartParams"].update({"num-gpus": "1"}),
     'spec.headGroupSpec.rayStartParams.num-gpus: must be "0" (the head runs no models), got \'1\'; '
     'set num-gpus: "0"'),
    ("head-service-cluster-ip", validation.rule_head_service_cluster_ip,
     lambda o: head(o).update(serviceType="LoadBalancer"),
     "spec.headGroupSpec.serviceType: must be ClusterIP (dashboard and GCS stay inside the cluster), got "
     "'LoadBalancer'; expose Serve through the Serve Service instead"),
    ("requests-equal-limits", validation.rule_requests_equal_limits,
     lambda o: ray_container(worker(o))["resources"]["requests"].update(cpu="1"),
     "spec.workerGroupSpecs[0].template.spec.containers[0].resources: requests must equal limits, got requests "
     "{'cpu': '1', 'memory': '32Gi'} and limits {'cpu': '8', 'memory': '32Gi'}; copy the limits"),
    ("gpu-groups-tolerate", validation.rule_gpu_groups_tolerate_gpu_nodes,
     lambda o: worker(o, 1)["template"]["spec"].pop("tolerations"),
     "spec.workerGroupSpecs[1].template.spec.tolerations: a GPU group must tolerate the GPU node taint, got []; "
     "add a toleration for nvidia.com/gpu"),
    ("no-privilege-escalation", validation.rule_restricted_pod_security,
     lambda o: ray_container(head(o))["securityContext"].update(allowPrivilegeEscalation=True),
     "spec.headGroupSpec.template.spec.containers[0].securityContext.allowPrivilegeEscalation: must be false, "
     "got True; set it to false"),
    ("capabilities-dropped", validation.rule_restricted_pod_security,
     lambda o: ray_container(worker(o))["securityContext"].pop("capabilities"),
     "spec.workerGroupSpecs[0].template.spec.containers[0].securityContext.capabilities.drop: must include ALL, "
     "got None; drop ALL"),
    ("seccomp-runtime-default", validation.rule_restricted_pod_security,
     lambda o: head(o)["template"]["spec"]["securityContext"].pop("seccompProfile"),
     "spec.headGroupSpec.template.spec.securityContext.seccompProfile.type: must be RuntimeDefault, got None; "
     "set it"),
    ("non-root", validation.rule_restricted_pod_security,
     lambda o: (head(o)["template"]["spec"]["securityContext"].update(runAsNonRoot=False),
                ray_container(head(o))["securityContext"].update(runAsNonRoot=False)),
     "spec.headGroupSpec.template.spec.containers[0].securityContext.runAsNonRoot: must be true, got False; "
     "run as the ray user"),
    ("no-host-path", validation.rule_restricted_pod_security,
     lambda o: head(o)["template"]["spec"]["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run"}}),
     "spec.headGroupSpec.template.spec.volumes.docker: hostPath volumes are not allowed; use an emptyDir"),
    ("no-host-network", validation.rule_restricted_pod_security,
     lambda o: worker(o)["template"]["spec"].update(hostNetwork=True),
     "spec.workerGroupSpecs[0].template.spec.hostNetwork: not allowed, got true; remove it"),
]


@pytest.mark.parametrize(("rule", "change", "message"), [c[1:] for c in CLUSTER_CASES],
                         ids=[c[0] for c in CLUSTER_CASES])
def test_cluster_rule(rule, change, message):
    cluster = RENDERED["RayCluster"]
    assert list(rule(cluster["spec"], "spec")) == []
    broken = changed("RayCluster", change)
    assert message in list(rule(broken["spec"], "spec"))


def service(change):
    return changed("RayService", change)


def job(change):
    return changed("RayJob", change)


def serve_edit(edit):
    """A change to the RayService's Serve config: ``edit`` mutates it as a dict."""
    def change(obj: dict) -> None:
        config = yaml.safe_load(obj["spec"]["serveConfigV2"])
        edit({a["name"]: a for a in config["applications"]})
        obj["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    return change


OBJECT_CASES = [
    ("name-length", "RayService", validation.rule_name,
     lambda o: o["metadata"].update(name="d" * 48),
     f"metadata.name: RayService names must be at most 47 characters (the operator appends suffixes), got "
     f"'{'d' * 48}' (48); shorten it"),
    ("name-dns-1035", "RayCluster", validation.rule_name,
     lambda o: o["metadata"].update(name="Destinations_Interactive"),
     "metadata.name: must be a DNS-1035 label (a-z, 0-9, '-', starting with a letter), got "
     "'Destinations_Interactive'; rename it"),
    ("upgrade-type", "RayService", validation.rule_upgrade_strategy,
     lambda o: o["spec"]["upgradeStrategy"].update(type="Recreate"),
     "spec.upgradeStrategy.type: must be one of NewCluster, NewClusterWithIncrementalUpgrade, None, got "
     "'Recreate'; pick one"),
    ("incremental-upgrade-gateway", "RayService", validation.rule_upgrade_strategy,
     lambda o: o["spec"]["upgradeStrategy"].update(type="NewClusterWithIncrementalUpgrade"),
     "spec.upgradeStrategy.clusterUpgradeOptions.gatewayClassName: required for NewClusterWithIncrementalUpgrade, "
     "got none; name the Gateway class"),
    ("head-service-unnamed", "RayService", validation.rule_head_service_unnamed,
     lambda o: o["spec"]["rayClusterConfig"]["headGroupSpec"].update(headService={"metadata": {"name": "head"}}),
     "spec.rayClusterConfig.headGroupSpec.headService.metadata.name: must not be set (each cluster of an upgrade "
     "needs its own), got 'head'; remove it"),
    ("serve-config-parses", "RayService", validation.rule_serve_config,
     lambda o: o["spec"].update(serveConfigV2="applications: [unclosed"),
     "spec.serveConfigV2: not a valid Serve config, got an error: while parsing a flow sequence; fix the file"),
    ("serve-config-host", "RayService", validation.rule_serve_config,
     lambda o: o["spec"].update(serveConfigV2=o["spec"]["serveConfigV2"].replace("host: 0.0.0.0", "host: 127.0.0.1")),
     "spec.serveConfigV2.http_options.host: must be 0.0.0.0 in a pod (the Serve Service and probes reach it from "
     "outside the container), got '127.0.0.1'; set it"),
    ("autoscaling-on-demand", "RayService", validation.rule_autoscaling_on_demand,
     serve_edit(lambda apps: apps["accommodations"]["deployments"][0]["autoscaling_config"].pop("policy")),
     "spec.serveConfigV2.applications.accommodations.deployments.Accommodations.autoscaling_config.policy."
     "policy_function: must be serve_apps.core.demand:demand_policy behind HAProxy (its limits cap the requests in "
     "flight other policies count), got 'the default policy'; set it"),
    ("serve-import-path", "RayService", validation.rule_serve_applications,
     serve_edit(lambda apps: apps["trips"].update(import_path="serve_apps.trip:app")),
     "spec.serveConfigV2.applications.trips.import_path: not an application of this project, got "
     "'serve_apps.trip:app'; use one of serve_apps.accommodations:app, serve_apps.destinations:app, "
     "serve_apps.trips:app"),
    ("serve-model-args", "RayService", validation.rule_serve_applications,
     serve_edit(lambda apps: apps["accommodations"]["args"].update(queue_budget=100)),
     "spec.serveConfigV2.applications.accommodations.args.queue_budget: Extra inputs are not permitted, got 100; "
     "fix the Serve config"),
    ("serve-user-config", "RayService", validation.rule_serve_applications,
     serve_edit(lambda apps: apps["destinations"]["deployments"][0]["user_config"].update(max_batch_size=0)),
     "spec.serveConfigV2.applications.destinations.deployments.Destinations.user_config.max_batch_size: Input "
     "should be greater than or equal to 1, got 0; fix the Serve config"),
    ("serve-composed-app", "RayService", validation.rule_serve_applications,
     serve_edit(lambda apps: apps["trips"]["args"].update(accommodations_app="hotels")),
     "spec.serveConfigV2.applications.trips.args.accommodations_app: no application of that name in this "
     "config, got 'hotels'; name one of accommodations, destinations, trips"),
    ("serve-gpus-fit", "RayService", validation.rule_serve_gpus_fit_the_cluster,
     serve_edit(lambda apps: apps["accommodations"]["deployments"][0]["autoscaling_config"].update(
         max_replicas=8)),
     "spec.serveConfigV2: replicas at their max_replicas need 6 GPUs (destinations.Destinations 2, "
     "accommodations.Accommodations 4), the worker groups have at most 4; lower max_replicas or num_gpus, or add "
     "GPU workers"),
    ("deletion-delay", "RayService", validation.rule_deletion_delay,
     lambda o: o["spec"].update(rayClusterDeletionDelaySeconds=-5),
     "spec.rayClusterDeletionDelaySeconds: must be non-negative, got -5; use 0 or more"),
    ("ttl-needs-shutdown", "RayJob", validation.rule_ttl_needs_shutdown,
     lambda o: o["spec"].update(shutdownAfterJobFinishes=False),
     "spec.ttlSecondsAfterFinished: needs shutdownAfterJobFinishes, got 3600 with shutdown off; "
     "set shutdownAfterJobFinishes: true"),
    ("ttl-non-negative", "RayJob", validation.rule_ttl_needs_shutdown,
     lambda o: o["spec"].update(ttlSecondsAfterFinished=-1),
     "spec.ttlSecondsAfterFinished: must be non-negative, got -1; use 0 or more"),
    ("cluster-or-selector", "RayJob", validation.rule_job_cluster,
     lambda o: o["spec"].pop("rayClusterSpec"),
     "spec.rayClusterSpec: one of rayClusterSpec or clusterSelector must be set, got neither; add one"),
    ("suspend-needs-shutdown", "RayJob", validation.rule_job_cluster,
     lambda o: o["spec"].update(suspend=True, shutdownAfterJobFinishes=False),
     "spec.suspend: a RayJob can be suspended only with shutdownAfterJobFinishes, got it off; "
     "set shutdownAfterJobFinishes: true"),
    ("active-deadline", "RayJob", validation.rule_job_limits,
     lambda o: o["spec"].update(activeDeadlineSeconds=0),
     "spec.activeDeadlineSeconds: must be positive, got 0; give the job a time limit"),
    ("backoff-limit", "RayJob", validation.rule_job_limits,
     lambda o: o["spec"].update(backoffLimit=-1),
     "spec.backoffLimit: must be non-negative, got -1; use 0 or more"),
    ("interactive-backoff", "RayJob", validation.rule_job_limits,
     lambda o: o["spec"].update(submissionMode="InteractiveMode", backoffLimit=2),
     "spec.backoffLimit: not supported in InteractiveMode, got 2; use 0"),
    ("runtime-env-yaml", "RayJob", validation.rule_runtime_env,
     lambda o: o["spec"].update(runtimeEnvYAML="working_dir: [oops"),
     "spec.runtimeEnvYAML: not valid YAML, got an error: while parsing a flow sequence; fix it"),
    ("runtime-env-pinned", "RayJob", validation.rule_runtime_env,
     lambda o: o["spec"].update(runtimeEnvYAML=yaml.safe_dump(
         {"working_dir": "https://github.com/travel-example/travel-recsys/archive/refs/heads/main.zip"})),
     "spec.runtimeEnvYAML.working_dir: must be an https git archive zip of a pinned commit (40 hex), got "
     "'https://github.com/travel-example/travel-recsys/archive/refs/heads/main.zip'; render with --commit"),
    ("submitter-template", "RayJob", validation.rule_submitter_security,
     lambda o: o["spec"].pop("submitterPodTemplate"),
     "spec.submitterPodTemplate: must be set so the submitter pod passes the restricted Pod Security Standard, "
     "got none; add it"),
    ("submitter-restricted", "RayJob", validation.rule_submitter_security,
     lambda o: o["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["securityContext"].update(privileged=True),
     "spec.submitterPodTemplate.spec.containers[0].securityContext.privileged: not allowed, got true; remove it"),
]


@pytest.mark.parametrize(("kind", "rule", "change", "message"), [c[1:] for c in OBJECT_CASES],
                         ids=[c[0] for c in OBJECT_CASES])
def test_object_rule(kind, rule, change, message):
    assert list(rule(RENDERED[kind])) == []
    assert message in list(rule(changed(kind, change)))


def test_embedded_clusters_get_the_cluster_rules_under_their_own_path():
    broken = service(lambda o: o["spec"]["rayClusterConfig"]["headGroupSpec"].update(serviceType="NodePort"))
    assert any(p.startswith("spec.rayClusterConfig.headGroupSpec.serviceType: must be ClusterIP")
               for p in semantic_problems(broken))
    broken = job(lambda o: o["spec"]["rayClusterSpec"]["authOptions"].update(mode="disabled"))
    assert "spec.rayClusterSpec.authOptions.mode: must be token, got 'disabled'; set mode: token" \
        in semantic_problems(broken)


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_rendered_environments_pass_every_check(schemas, env_name):
    env = environments.load(env_name)
    assert validate_manifests(manifests.render(env, COMMIT), schemas, env.kubernetes_version) == []


def test_problems_from_every_check_are_reported_with_the_object(schemas):
    objects = manifests.render(PROD, COMMIT)
    objects[1]["data"]["core-site.xml"] = 42  # a built-in kind against the Kubernetes schema
    ray_service = objects[3]
    ray_service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "one"  # CRD schema
    ray_service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-gpus"] = "2"  # rule
    problems = validate_manifests(objects, schemas, PROD.kubernetes_version)
    assert "ConfigMap/destinations-hadoop-conf: data.core-site.xml: 42 is not of type 'string', 'null'" in problems
    assert "RayService/destinations: spec.rayClusterConfig.workerGroupSpecs[0].minReplicas: 'one' is not of " \
           "type 'integer'" in problems
    assert any(p.startswith("RayService/destinations: spec.rayClusterConfig.headGroupSpec.rayStartParams.num-gpus")
               for p in problems)


POD_MONITOR_CASES = [
    ("selects-no-pod", lambda o: o["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/instance": "other"}),
     "spec.selector.matchLabels: selects no Ray pod of these manifests, got {'app.kubernetes.io/instance': 'other'}; "
     "use the labels of the Ray pod templates"),
    ("unnamed-port", lambda o: o["spec"]["podMetricsEndpoints"][0].update(port="prometheus"),
     "spec.podMetricsEndpoints[0].port: none of the 13 selected pod templates names a port 'prometheus'; name the "
     "metrics port of the Ray container so"),
]


@pytest.mark.parametrize(("change", "message"), [c[1:] for c in POD_MONITOR_CASES],
                         ids=[c[0] for c in POD_MONITOR_CASES])
def test_pod_monitor_rule(change, message):
    objects = manifests.render(PROD, COMMIT)
    assert list(validation.rule_pod_monitor_targets(RENDERED["PodMonitor"], objects)) == []
    assert list(validation.rule_pod_monitor_targets(changed("PodMonitor", change), objects)) == [message]


def test_a_pod_monitor_is_admitted_against_its_crd(schemas):
    objects = manifests.render(PROD, COMMIT)
    objects[-1]["spec"]["podMetricsEndpoints"][0]["scheme"] = "gopher"
    objects[-1]["spec"]["sampleLimit"] = "many"
    problems = validate_manifests(objects, schemas, PROD.kubernetes_version)
    assert [p for p in problems if p.startswith("PodMonitor/")] == [
        "PodMonitor/destinations-ray: spec.podMetricsEndpoints[0].scheme: 'gopher' is not one of ['http', 'https']",
        "PodMonitor/destinations-ray: spec.sampleLimit: 'many' is not of type 'integer'"]
