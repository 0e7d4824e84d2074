"""Helpers for tests that run a real Serve: deploy configs/serve/local.yaml with `serve deploy`, call it over HTTP.

The ``serve_cluster`` fixture (tests/conftest.py) starts one Ray instance in HAProxy direct-ingress mode, as
`make run` does; these functions drive it the way an operator would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import yaml

from recsys.destinations.features import Vocabulary
from tests.support import ROOT

LOCAL_CONFIG = ROOT / "configs" / "serve" / "local.yaml"
NAME = "destinations"
SERVE = str(Path(sys.executable).parent / "serve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServeCluster:
    dashboard: str
    http_port: int
    work_dir: Path
    logs: Path
    metrics_port: int  # Ray's Prometheus metrics: http://127.0.0.1:<port>/metrics
    haproxy_metrics_port: int  # HAProxy's exporter: http://127.0.0.1:<port>/metrics

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/destinations"

    def replica_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs.glob("serve/replica_*.log"))


def serve_config(cluster: ServeCluster, store_uri: str, version: str, args: dict | None = None, replicas: int = 1,
                 **user_config) -> dict:
    """The destination application of configs/serve/local.yaml pointed at a test store and port, with one replica
    (unless asked) so that every request and every status call reaches the same replica."""
    config = local_config(cluster, ["destinations"])
    point_at(config, "destinations", f"{store_uri}/{NAME}", version, cluster, args, replicas, **user_config)
    return config


def local_config(cluster: ServeCluster, applications: list[str]) -> dict:
    """configs/serve/local.yaml on the test port, with only ``applications``."""
    config = yaml.safe_load(LOCAL_CONFIG.read_text())
    config["http_options"]["port"] = cluster.http_port
    config["applications"] = [a for a in config["applications"] if a["name"] in applications]
    return config


def point_at(config: dict, application: str, model_uri: str, version: str, cluster: ServeCluster,
             args: dict | None = None, replicas: int = 1, **user_config) -> None:
    """Point a model application of ``config`` at ``model_uri`` (``<store>/<name>``) and ``version``, with a test
    cache, quick retries and a fixed number of replicas."""
    [app] = [a for a in config["applications"] if a["name"] == application]
    app["args"].update({"cache_dir": str(cluster.work_dir / "model-cache"), "load_attempts": 2,
                        "load_backoff_s": 0.2, **(args or {})})
    deployment = app["deployments"][0]
    deployment["user_config"].update(model_uri=model_uri, model_version=version, **user_config)
    deployment["autoscaling_config"].update(min_replicas=replicas, max_replicas=replicas)


def _serve_cli(cluster: ServeCluster, *args: str) -> None:
    result = subprocess.run([SERVE, *args, "--address", cluster.dashboard], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "RAY_AUTH_MODE": "token"})
    assert result.returncode == 0, result.stderr[-3000:]


def serve_deploy(cluster: ServeCluster, config: dict) -> None:
    """`serve deploy` through the dashboard's REST API, as an operator (or KubeRay) does it."""
    path = cluster.work_dir / f"serve-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    _serve_cli(cluster, "deploy", str(path))


def serve_shutdown(cluster: ServeCluster) -> None:
    """Remove every application (the next deploy starts replicas from scratch)."""
    _serve_cli(cluster, "shutdown", "-y")


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


def deploy_version(cluster: ServeCluster, store_uri: str, version: str, timeout: float = 120,
                   **user_config) -> dict:
    """Deploy ``version`` and wait until the replica serves it; returns the model status."""
    serve_deploy(cluster, serve_config(cluster, store_uri, version, **user_config))
    return wait_for(lambda: (s := model_status(cluster)) and s["version"] == version and
                    all(s.get(k) == v for k, v in user_config.items()) and s,
                    timeout=timeout, what=f"version {version} to be served")


def post(url: str, client: httpx.Client | None = None, attempts: int = 5, **kwargs) -> httpx.Response:
    """A POST as the service's callers make it (recsys_client does the same): an answer of 503 with Retry-After is
    tried again after it, up to ``attempts`` times, and any other answer is returned. On a shared 2-core machine
    even a lone request can wait past the 100 ms queueing budget (CI saw one queued 144 ms); the answer a test
    asks about is the one after. Tests of load count their 503s: attempts=1."""
    kwargs.setdefault("timeout", 30)
    response = (client or httpx).post(url, **kwargs)
    for _ in range(attempts - 1):
        if response.status_code != 503 or "retry-after" not in response.headers:
            break
        time.sleep(float(response.headers["retry-after"]))
        response = (client or httpx).post(url, **kwargs)
    return response


def recommend(cluster: ServeCluster, body: dict, client: httpx.Client | None = None,
              attempts: int = 5) -> httpx.Response:
    return post(f"{cluster.url}/recommend", client, attempts, json=body)


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
