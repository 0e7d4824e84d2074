"""A real Serve for the serving tests: one Ray instance in HAProxy direct-ingress mode (as `make run` uses),
applications deployed with the `serve deploy` CLI from configs/serve/local.yaml, requests over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import ray
import tensorflow as tf
import yaml
from ray import serve

from recsys import signature
from recsys.artifact_store import ModelStore
from recsys.features import Vocabulary
from recsys.manifest import VOCABULARY_FILE, Metrics
from recsys.model import DestinationRecommender, ModelConfig, build_network
from serve_apps.local import haproxy_environment
from tests.support import ROOT

LOCAL_CONFIG = ROOT / "configs" / "serve" / "local.yaml"
NAME = "destinations"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServeCluster:
    dashboard: str
    http_port: int
    work_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/destinations"


@pytest.fixture(scope="session")
def serve_cluster(short_tmp) -> ServeCluster:
    """Ray with Serve's HAProxy ingress; its processes inherit this environment when ray.init starts them."""
    saved = dict(os.environ)
    os.environ.update(haproxy_environment(short_tmp / "haproxy", stats_port=free_port(), metrics_port=free_port()))
    dashboard_port = free_port()
    ray.init(address="local", num_cpus=4, include_dashboard=True, dashboard_port=dashboard_port,
             _temp_dir=str(short_tmp / "ray"))
    try:
        yield ServeCluster(dashboard=f"http://127.0.0.1:{dashboard_port}", http_port=free_port(),
                           work_dir=short_tmp)
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class ServingStore:
    uri: str
    good: str  # the session's trained model
    other: str  # a different, smaller network with the same vocabulary and signature
    corrupt: str  # published, then one byte flipped in the store
    wrong_signature: str  # a SavedModel whose serving_default is not the contract


@pytest.fixture(scope="session")
def serving_store(trained_model, tmp_path_factory) -> ServingStore:
    root = tmp_path_factory.mktemp("serving-store")
    store = ModelStore(str(root / "models"))
    trained = ModelStore(trained_model.store_uri).fetch(NAME, trained_model.version, root / "fetch")
    store.publish(trained.path, trained.manifest)
    vocabulary = Vocabulary.model_validate_json((trained.path / VOCABULARY_FILE).read_text())

    def publish(version: str, build) -> str:
        source = root / version
        build(source)
        store.publish(source, trained.manifest.model_copy(update={
            "version": version, "created_at": dt.datetime.now(dt.UTC),
            "metrics": Metrics(accuracy_at_4=0.0, baselines=trained.manifest.metrics.baselines, test_trips=0)}))
        return version

    def small_network(path: Path) -> None:
        config = ModelConfig(history_length=8, city_embedding_dim=8, hidden_units=16)
        DestinationRecommender(build_network(config, vocabulary.sizes()), vocabulary, config).save(
            str(path / "saved_model"))

    def other_signature(path: Path) -> None:
        module = tf.Module()
        module.serve = tf.function(lambda cities: {"cities": cities},
                                   input_signature=[tf.TensorSpec([None, None], tf.int64, name="cities")])
        tf.saved_model.save(module, str(path / "saved_model"), signatures={signature.NAME: module.serve})

    other = publish("v2-small", small_network)
    corrupt = publish("v3-corrupt", small_network)
    variables = root / "models" / NAME / corrupt / "saved_model" / "variables" / "variables.data-00000-of-00001"
    data = bytearray(variables.read_bytes())
    data[len(data) // 2] ^= 0x01
    variables.write_bytes(bytes(data))
    wrong = publish("v4-wrong-signature", other_signature)
    return ServingStore(uri=str(root / "models"), good=trained_model.version, other=other, corrupt=corrupt,
                        wrong_signature=wrong)


def serve_config(cluster: ServeCluster, store_uri: str, version: str, **user_config) -> dict:
    """configs/serve/local.yaml pointed at the test store and port, with one replica so that every request and
    every status call reaches the same replica."""
    config = yaml.safe_load(LOCAL_CONFIG.read_text())
    config["http_options"]["port"] = cluster.http_port
    application = config["applications"][0]
    application["args"].update(cache_dir=str(cluster.work_dir / "model-cache"), load_attempts=2,
                               load_backoff_s=0.2)
    deployment = application["deployments"][0]
    deployment["user_config"].update(model_uri=f"{store_uri}/{NAME}", model_version=version, **user_config)
    deployment["autoscaling_config"].update(min_replicas=1, max_replicas=1)
    return config


def serve_deploy(cluster: ServeCluster, config: dict) -> None:
    """`serve deploy` through the dashboard's REST API, as an operator (or KubeRay) does it."""
    path = cluster.work_dir / f"serve-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([str(Path(sys.executable).parent / "serve"), "deploy", str(path),
                             "--address", cluster.dashboard], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "RAY_AUTH_MODE": "token"})
    assert result.returncode == 0, result.stderr[-3000:]


def wait_for(condition, timeout: float = 120, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except httpx.HTTPError as err:
            last = err
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def model_status(cluster: ServeCluster) -> dict | None:
    response = httpx.get(f"{cluster.url}/model", timeout=10)
    return response.json() if response.status_code == 200 else None


def deploy_version(cluster: ServeCluster, store: ServingStore, version: str, **user_config) -> dict:
    """Deploy ``version`` and wait until the replica serves it; returns the model status."""
    serve_deploy(cluster, serve_config(cluster, store.uri, version, **user_config))
    return wait_for(lambda: (s := model_status(cluster)) and s["version"] == version and
                    all(s.get(k) == v for k, v in user_config.items()) and s,
                    what=f"version {version} to be served")


def recommend(cluster: ServeCluster, body: dict, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(f"{cluster.url}/recommend", json=body, timeout=30)


def requests_from(vocabulary: Vocabulary, n: int, seed: int = 0) -> list[dict]:
    """Plausible requests: known cities, countries and devices, with a few unknown values mixed in."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(1, 12))
        cities = [int(c) for c in rng.choice(vocabulary.cities[:300], size=length, replace=False)]
        out.append({"cities": cities if i % 7 else cities + [99_999_999],
                    "booker_country": vocabulary.booker_countries[i % len(vocabulary.booker_countries)]
                    if i % 11 else "Atlantis",
                    "device_class": vocabulary.device_classes[i % len(vocabulary.device_classes)],
                    "affiliate_id": int(vocabulary.affiliates[i % len(vocabulary.affiliates)]) if i % 3 else None,
                    "k": int(1 + i % 10)})
    return out


def load_vocabulary(store: ServingStore) -> Vocabulary:
    return Vocabulary.model_validate(json.loads(ModelStore(store.uri).read_file(NAME, store.good, VOCABULARY_FILE)))
