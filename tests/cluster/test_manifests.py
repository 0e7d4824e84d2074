"""What the rendered manifests say: one source of truth with the Serve and training configs, GPUs, HDFS, security."""

from __future__ import annotations

import re

import pytest
import yaml

from cluster import environments, manifests
from cluster.validation import validate_manifests
from recsys.errors import ConfigError
from tests.cluster.conftest import COMMIT
from tests.support import ROOT
from batch.config import load_config as load_precompute_config
from training.config import load_config
from training.accommodations import AccommodationsConfig
from training.destinations import DestinationsConfig


def _by_kind(objects: list[dict]) -> dict[str, dict]:
    return {obj["kind"]: obj for obj in objects}


def _pod_specs(obj: dict) -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod template of a KubeRay object."""
    spec = obj["spec"]
    cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or spec
    out = [("head", cluster["headGroupSpec"]["template"]["spec"])]
    out += [(g["groupName"], g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]
    if "submitterPodTemplate" in spec:
        out.append(("submitter", spec["submitterPodTemplate"]["spec"]))
    return out


def test_every_environment_renders_the_same_kinds_in_apply_order(env):
    kinds = [obj["kind"] for obj in manifests.render(env, COMMIT)]
    assert kinds == ["Namespace", "ConfigMap", "NetworkPolicy", "RayService", *["RayJob"] * 4, "RayCluster",
                     *(["PodMonitor"] if env.monitoring.pod_monitor else [])]
    assert all(obj["metadata"].get("namespace", env.namespace) == env.namespace
               for obj in manifests.render(env, COMMIT))


def test_prod_serve_config_v2_is_the_production_serve_config_unchanged():
    service = _by_kind(manifests.render(environments.load("prod"), COMMIT))["RayService"]
    file = yaml.safe_load((ROOT / "configs" / "serve" / "production.yaml").read_text())
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == file


def test_dev_serve_config_v2_is_local_yaml_with_only_the_listed_changes():
    env = environments.load("dev")
    served = yaml.safe_load(_by_kind(manifests.render(env, COMMIT))["RayService"]["spec"]["serveConfigV2"])
    local = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
    assert served["http_options"]["host"] == "0.0.0.0"
    assert served["applications"][0]["deployments"][0]["user_config"]["model_uri"].startswith("hdfs://")
    for path in env.serving.set:  # undo the documented changes: the rest must be the file itself
        manifests._set(served, path, _get(local, path))
    assert served == local


def _get(config, dotted: str):
    for part in dotted.split("."):
        config = config[int(part)] if isinstance(config, list) else config[part]
    return config


def test_each_model_version_can_be_pinned_at_render_time():
    service = _by_kind(manifests.render(environments.load("prod"), COMMIT,
                                        {"accommodations": "20261129T204104Z-100c"}))
    config = yaml.safe_load(service["RayService"]["spec"]["serveConfigV2"])
    versions = {a["name"]: a["deployments"][0].get("user_config", {}).get("model_version")
                for a in config["applications"]}
    assert versions == {"destinations": "latest", "accommodations": "20261129T204104Z-100c", "trips": None}


@pytest.mark.parametrize(("pin", "message"), [
    ({"flights": "v1"}, "no application of configs/serve/production.yaml serves a model named 'flights'"),
    ({"destinations": "../v1"}, "model_version must match"),
])
def test_a_bad_model_version_pin_is_refused(pin, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        manifests.render(environments.load("prod"), COMMIT, pin)


def test_an_unknown_serve_setting_is_refused(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "cluster" / "dev.yaml").read_text())
    raw["serving"]["set"] = {"http_options.hots": "0.0.0.0"}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"serving.set.http_options.hots: no such setting in configs/serve/local.yaml"):
        manifests.render(environments.load(str(path)), COMMIT)


def test_the_model_comes_from_hdfs_not_the_image(env):
    objects = _by_kind(manifests.render(env, COMMIT))
    config = yaml.safe_load(objects["RayService"]["spec"]["serveConfigV2"])
    assert config["applications"][0]["deployments"][0]["user_config"]["model_uri"].startswith("hdfs://")
    hadoop = objects["ConfigMap"]["data"]
    assert f"<name>fs.defaultFS</name><value>{env.hdfs.default_fs}</value>" in hadoop["core-site.xml"]
    for kind in ("RayService", "RayJob", "RayCluster"):
        for where, pod in _pod_specs(objects[kind]):
            if where == "submitter":
                continue
            ray = pod["containers"][0]
            env_vars = {e["name"]: e for e in ray["env"]}
            assert env_vars["HADOOP_CONF_DIR"]["value"] == manifests.HADOOP_CONF_DIR
            assert env_vars["HADOOP_USER_NAME"]["valueFrom"]["secretKeyRef"]["name"] == env.hdfs.credentials_secret
            assert {"name": "hadoop-conf", "configMap": {"name": objects["ConfigMap"]["metadata"]["name"]}} \
                in pod["volumes"]


def test_prod_hdfs_is_an_ha_name_service():
    hdfs_site = _by_kind(manifests.render(environments.load("prod"), COMMIT))["ConfigMap"]["data"]["hdfs-site.xml"]
    assert "<name>dfs.nameservices</name><value>travel-hdfs</value>" in hdfs_site
    assert "<name>dfs.ha.namenodes.travel-hdfs</name><value>nn1,nn2</value>" in hdfs_site
    assert "dfs.namenode.rpc-address.travel-hdfs.nn2" in hdfs_site


def test_head_advertises_no_gpus_and_gpu_workers_are_isolated():
    service = _by_kind(manifests.render(environments.load("prod"), COMMIT))["RayService"]
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    assert cluster["enableInTreeAutoscaling"] is True and cluster["autoscalerOptions"]["version"] == "v2"
    [gpu] = cluster["workerGroupSpecs"]
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert gpu["template"]["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                       "effect": "NoSchedule"}]
    assert gpu["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (1, 4)
    assert service["spec"]["upgradeStrategy"] == {"type": "NewCluster"}


def _jobs(env, component: str = "training") -> dict[str, dict]:
    """The RayJobs of ``component`` (training: by model; precompute: by prediction set)."""
    key = "recsys.travel.example/" + ("model" if component == "training" else "predictions")
    return {job["metadata"]["labels"][key]: job for job in manifests.render(env, COMMIT)
            if job["kind"] == "RayJob" and job["metadata"]["labels"]["app.kubernetes.io/component"] == component}


def test_each_model_has_a_training_job_running_pinned_code_with_its_training_config(env):
    jobs = _jobs(env)
    assert set(jobs) == set(env.training.jobs) == {"destinations", "accommodations"}
    for model, job in jobs.items():
        spec = job["spec"]
        assert spec["entrypoint"] == f"python -m training.{model} --config {env.training.jobs[model].config}"
        runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
        assert runtime_env["working_dir"] == env.training.code_archive.format(commit=COMMIT)
        assert runtime_env["env_vars"]["GIT_COMMIT"] == COMMIT
        assert runtime_env["env_vars"]["DATA_URI"] == env.training.jobs[model].data_uri
        assert runtime_env["env_vars"]["MODEL_STORE_URI"] == env.training.store_uri
        assert spec["shutdownAfterJobFinishes"] is True
        assert spec["ttlSecondsAfterFinished"] == env.training.ttl_seconds_after_finished
        assert spec["activeDeadlineSeconds"] == env.training.active_deadline_seconds
        assert job["metadata"]["name"] == f"{env.name}-train-{model}-{COMMIT[:7]}"


def test_jobs_submitted_over_http_have_no_submitter_pod_and_still_validate(schemas):
    env = environments.load("dev")
    env = env.model_copy(update={"training": env.training.model_copy(update={"submission_mode": "HTTPMode"}),
                                 "batch": env.batch.model_copy(update={"submission_mode": "HTTPMode"})})
    jobs = [o for o in manifests.render(env, COMMIT) if o["kind"] == "RayJob"]
    assert len(jobs) == 4
    assert all(j["spec"]["submissionMode"] == "HTTPMode" and "submitterPodTemplate" not in j["spec"] for j in jobs)
    assert validate_manifests(jobs, schemas, env.kubernetes_version) == []
    assert all(_jobs(environments.load("dev"))[m]["spec"]["submissionMode"] == "K8sJobMode" for m in env.training.jobs)


@pytest.mark.parametrize("model", ["destinations", "accommodations"])
def test_the_training_cluster_has_a_worker_for_every_training_worker(env, model):
    job = _jobs(env)[model]
    config_type = {"destinations": DestinationsConfig, "accommodations": AccommodationsConfig}[model]
    training = load_config(ROOT / env.training.jobs[model].config, {}, config_type)
    assert training.model_name == model
    [workers] = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert workers["minReplicas"] >= training.num_workers
    gpus = workers["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpus == "1") is training.use_gpu


def test_each_prediction_set_has_a_precompute_job_running_pinned_code_with_its_batch_config(env):
    jobs = _jobs(env, "precompute")
    assert set(jobs) == set(env.batch.jobs) == {"destinations", "trips"}
    for predictions, job in jobs.items():
        spec = job["spec"]
        assert spec["entrypoint"] == f"python -m batch.precompute --config {env.batch.jobs[predictions].config}"
        runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
        assert runtime_env["working_dir"] == env.training.code_archive.format(commit=COMMIT)
        assert runtime_env["env_vars"] == {"INPUT_URI": env.batch.jobs[predictions].input_uri,
                                           "MODEL_STORE_URI": env.training.store_uri, "GIT_COMMIT": COMMIT}
        assert spec["activeDeadlineSeconds"] == env.batch.active_deadline_seconds
        assert job["metadata"]["name"] == f"{env.name}-score-{predictions}-{COMMIT[:7]}"


@pytest.mark.parametrize("predictions", ["destinations", "trips"])
def test_the_precompute_cluster_holds_the_whole_actor_pool(env, predictions):
    """Every scoring actor finds its CPUs and its share of a card on the job's workers; prod shares cards."""
    job = _jobs(env, "precompute")[predictions]
    config = load_precompute_config(ROOT / env.batch.jobs[predictions].config, {})
    assert config.predictions == predictions
    [workers] = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    pool = config.scoring
    assert pool.concurrency * pool.num_cpus <= workers["minReplicas"] * float(limits["cpu"])
    assert pool.concurrency * pool.num_gpus <= workers["minReplicas"] * int(limits.get("nvidia.com/gpu", 0))
    if limits.get("nvidia.com/gpu"):
        assert 0 < pool.num_gpus < 1  # fractional: actors share a card, TensorFlow capped to the share
    else:
        assert pool.num_gpus == 0


def test_every_pod_is_restricted_and_every_cluster_uses_token_auth(env):
    objects = _by_kind(manifests.render(env, COMMIT))
    assert objects["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for kind in ("RayService", "RayJob", "RayCluster"):
        spec = objects[kind]["spec"]
        cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or spec
        assert cluster["authOptions"] == {"mode": "token", "secretName": env.ray_auth_secret}
        assert cluster["headGroupSpec"]["serviceType"] == "ClusterIP"
        assert cluster["autoscalerOptions"]["securityContext"]["allowPrivilegeEscalation"] is False
        for where, pod in _pod_specs(objects[kind]):
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for container in pod["containers"]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
                assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, where
    submitter_env = {e["name"]: e for e in objects["RayJob"]["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["env"]}
    assert submitter_env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": env.ray_auth_secret,
                                                                             "key": "auth_token"}


def test_only_the_serve_port_is_reachable_from_other_namespaces(env):
    """And Ray's and HAProxy's metrics ports from Prometheus' namespace, where a PodMonitor is rendered."""
    policy = _by_kind(manifests.render(env, COMMIT))["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/instance": env.name}}
    same_namespace, operator, everyone, *monitoring = policy["ingress"]
    assert monitoring == ([{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": env.monitoring.prometheus_namespace}}}],
        "ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 9101}]}]
        if env.monitoring.pod_monitor else [])
    assert same_namespace == {"from": [{"podSelector": {}}]}
    assert operator["ports"] == [{"protocol": "TCP", "port": 8265}]
    assert operator["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": env.kuberay_operator_namespace}
    assert everyone == {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 8000}]}


def test_prod_scrapes_ray_on_every_ray_pod_and_haproxy_on_serving_workers_and_dev_renders_no_pod_monitor():
    prod, dev = environments.load("prod"), environments.load("dev")
    assert "PodMonitor" not in _by_kind(manifests.render(dev, COMMIT))
    objects = manifests.render(prod, COMMIT)
    monitor = _by_kind(objects)["PodMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"] == {"selector": {"matchLabels": {"app.kubernetes.io/instance": "destinations"}},
                               "podMetricsEndpoints": [
                                   {"port": "metrics", "path": "/metrics", "interval": "15s"},
                                   {"port": "ingress-metrics", "path": "/metrics", "interval": "15s"}]}
    clusters = [obj for obj in objects if obj["kind"] in ("RayService", "RayJob", "RayCluster")]
    haproxy = {"containerPort": 9101, "name": "ingress-metrics"}
    for obj in clusters:
        for where, spec in _pod_specs(obj):
            if where != "submitter":  # a RayJob's submitter pod runs no Ray node
                ports = spec["containers"][0]["ports"]
                assert {"containerPort": 8080, "name": "metrics"} in ports, (obj, where)
                # HAProxy runs where Serve's replicas run: the serving cluster's workers, with its exporter here
                assert (haproxy in ports) == (obj["kind"] == "RayService" and where != "head"), (obj, where)
    [worker] = [spec for where, spec in _pod_specs(_by_kind(objects)["RayService"]) if where != "head"]
    assert {"name": "RAY_SERVE_HAPROXY_METRICS_PORT", "value": "9101"} in worker["containers"][0]["env"]


def test_no_secret_values_are_rendered(env):
    text = manifests.to_yaml(manifests.render(env, COMMIT))
    assert "kind: Secret" not in text
    assert "auth_token:" not in text


def test_an_unknown_environment_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"staging.yaml: cannot read environment .*known: \['dev', 'prod'\]"):
        environments.load("staging")
