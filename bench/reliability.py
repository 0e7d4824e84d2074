"""Reliability benchmark: the served destination model under bad input, overload and faults, as `make run` serves it.

    python -m bench.reliability            (make bench-reliability; about 10 minutes on 2 cores)

One server (configs/serve/local.yaml through serve_apps.local: HAProxy direct ingress, 1-2 autoscaled replicas),
pointed at a copy of the local model in a store of its own, and one load generator (vegeta, bench/loadgen.py):

1. capacity: 16 closed-loop clients;
2. poison mix: 4 clients sending an id beyond int64 beside 16 sending valid trips (the valid ones must all be 200);
3. autoscaling: how long 2x overload takes until a second replica takes traffic (HAProxy's stats: the replicas
   it routes to, up, with sessions);
4. overload, on both replicas (run before the second one is up, a point had the autoscaler start it in its middle,
   and its load took these 2 cores from the replica measured): open loop at 2x and 10x the capacity, and 1,500
   closed-loop clients that retry at once: the share of 200 / 503 / errors, p50 and p99 of the 200s (also once the
   first second, in which HAProxy's limits settle, is over) and of the 503s, time to the first 503, Retry-After on
   the 503s, and HAProxy's limit per replica over time;
5. replica SIGKILL under 16 clients: failed requests, seconds until a replacement replica takes traffic;
6. hot swap under half the autoscaling target's clients (the headroom replicas run with): a new version published
   as LATEST; failed requests (must be 0), seconds until every replica answers with it.

Before all of it, the overload points run once more on a server of their own with fixed limits (``--fixed-limits``:
``inflight_target_ms`` 0), for comparison. Latencies are measured twice: by the load generator (what a client sees,
including the generator's own delays when it competes for the same 2 cores), and by HAProxy (its log line of every
request, accept to last byte, with the time queued; ``RECSYS_HAPROXY_TIMING_LOG``), which is what the server itself
does.

Results go to bench/results/reliability.{json,md,png}; the server's log to bench/results/raw/. A partial run
(``--only``) writes to bench/results/raw/ instead.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from bench import loadgen, servers
from bench.loadgen import StatusBreakdown, Target
from bench.serving import request_bodies
from recsys.artifact_store import ModelStore
from recsys.destinations.features import Vocabulary
from recsys.manifest import VOCABULARY_FILE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RAW = RESULTS / "raw"
WORK = ROOT / ".data" / "bench" / "reliability"
LOCAL_STORE, MODEL = ROOT / ".data" / "models", "destinations"
URL = "http://127.0.0.1:8000/destinations"
STATS = "http://127.0.0.1:8404/stats;csv"  # HAProxy's stats page (serve_apps/core/ingress.py), on loopback
REPLICA_PROCESS = "ServeReplica:destinations:Destinations"
SECTIONS = ("poison", "overload", "autoscaling", "kill", "swap")
log = logging.getLogger("bench.reliability")
# HAProxy's HTTP log line: ... TR/Tw/Tc/Tr/Ta status ...  (Tw: time queued; Ta: accept to last byte; ms)
_TIMERS = re.compile(r" -?\d+/(-?\d+)/-?\d+/-?\d+/\+?(\d+) (\d{3}) ")
VEGETA_NICENESS = min(2 * loadgen.NICENESS, 19)
SETTLE_S = 1.0  # the first second of a load point: the controller's limits settle (serve_apps/adaptive_limits.lua)


class HAProxyTimings:
    """Collects HAProxy's log line of every request on a UDP port: (when received, status, queued ms, total ms).
    Lines are kept as they arrive and parsed only when figures are asked for: parsing thousands a second during a
    load point would take CPU from the server being measured."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._lines: list[tuple[float, bytes]] = []
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            self._lines.append((time.time(), self._socket.recv(65536)))

    def during(self, started: float, ended: float) -> dict:
        """Server-side figures of the requests answered between ``started`` and ``ended`` (seconds since the epoch)."""
        rows = []
        for received, line in self._lines:
            match = _TIMERS.search(line.decode(errors="replace")) if started <= received <= ended else None
            if match:
                rows.append((int(match[3]), int(match[1]), int(match[2]), received))
        ok = np.array([r[2] for r in rows if r[0] == 200])
        queued = np.array([max(r[1], 0) for r in rows if r[0] == 200])
        settled = np.array([r[2] for r in rows if r[0] == 200 and r[3] >= started + SETTLE_S])
        return {"requests": len(rows),
                "p50_ok_ms": _percentile(ok, 50), "p99_ok_ms": _percentile(ok, 99),
                "p99_ok_queued_ms": _percentile(queued, 99), "max_ok_ms": _percentile(ok, 100),
                "p99_ok_settled_ms": _percentile(settled, 99)}


class LimitSampler:
    """HAProxy's limit on each destinations replica (the controller's ``maxconn``) and its requests in flight,
    read from the stats page every ``period_s`` while a load runs: (seconds since start, replica, limit, in flight)."""

    def __init__(self, period_s: float = 0.25) -> None:
        self.period_s = period_s
        self.samples: list[tuple[float, str, int, int]] = []
        self._stop = threading.Event()
        self._started = time.time()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LimitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            at = round(time.time() - self._started, 2)
            for row in _replica_rows():
                self.samples.append((at, row["svname"], int(row["slim"] or 0), int(row["scur"] or 0)))


def _percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each load point")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these parts (default: all)")
    parser.add_argument("--fixed-limits", action="store_true",
                        help="serve with inflight_target_ms 0: HAProxy's limits as the config sets them, never adapted")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    RAW.mkdir(parents=True, exist_ok=True)
    # The same overload points with fixed limits, for comparison; first, from a process still at the niceness the
    # server below starts with (this one lowers its own once that server is up).
    fixed = _fixed_limits_run(args.seconds) if not args.only else None
    store, versions = _bench_store()
    config = _config(store, fixed_limits=args.fixed_limits)
    serve_config = yaml.safe_load(config.read_text())["applications"][0]
    target = serve_config["deployments"][0]["autoscaling_config"]["target_ongoing_requests"]
    vocabulary = Vocabulary.model_validate_json(store.read_file(MODEL, versions[0], VOCABULARY_FILE))
    bodies = request_bodies(vocabulary)
    good = loadgen.write_targets([Target(f"{URL}/recommend", b) for b in bodies], WORK / "good.targets")
    bad = loadgen.write_targets([Target(f"{URL}/recommend", {**b, "cities": [99999999999999999999]})
                                 for b in bodies[:16]], WORK / "bad.targets")
    log_path = RAW / "reliability-server.log"
    timings = HAProxyTimings()
    process = servers.start([sys.executable, "-m", "serve_apps.local", str(config)], ROOT, log_path,
                            {"RECSYS_HAPROXY_TIMING_LOG": timings.address})
    try:
        servers.wait_ready("serve", process, lambda: httpx.post(f"{URL}/recommend", json=bodies[0],
                                                                timeout=10).status_code == 200, log_path)
        # This process receives HAProxy's log line of every request and decodes every answer: it must not take the
        # cores from the server it measures (started first, so the server keeps its own niceness). vegeta, started
        # from here with loadgen's own increment, runs at VEGETA_NICENESS: below the replicas, as a load generator
        # on other machines would not compete with them at all.
        os.nice(loadgen.NICENESS)
        loadgen.closed_loop(good, 16, 5)  # warm connections and caches
        results = run(good, bad, store, versions, args.seconds, set(args.only or SECTIONS), timings,
                      swap_clients=max(1, round(target / 2)))
    finally:
        servers.stop(process)
    summary = {
        "benchmark": "reliability",
        "ran_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "config": {"queue_budget_ms": serve_config["args"]["queue_budget_ms"],
                   "inflight_target_ms": serve_config["args"]["inflight_target_ms"],
                   "vegeta_niceness": VEGETA_NICENESS,
                   **{k: serve_config["deployments"][0][k] for k in ("max_ongoing_requests", "max_queued_requests")},
                   "target_ongoing_requests": target},
        **results,
        **({"fixed_limits": fixed} if fixed else {}),
    }
    out = RAW if args.only else RESULTS  # a partial run never replaces the full results
    (out / ("reliability-fixed-limits.json" if args.fixed_limits else "reliability.json")).write_text(
        json.dumps(summary, indent=2))
    if not args.only:
        (out / "reliability.md").write_text(markdown(summary))
        plot(summary, out / "reliability.png")
        print(markdown(summary))
    else:
        print(json.dumps({k: v for k, v in results.items() if k not in ("capacity",)}, indent=1, default=str)[:6000])


def run(good: Path, bad: Path, store: ModelStore, versions: list[str], seconds: float, sections: set[str],
        timings: HAProxyTimings, swap_clients: int) -> dict:
    capacity = loadgen.breakdown(good, "closed", 16, seconds)
    log.info("capacity: %.0f req/s at 16 clients", capacity.ok_per_second)
    results: dict = {"capacity": capacity.to_dict()}
    if "poison" in sections:
        valid, bad_result = _together(lambda: loadgen.breakdown(good, "closed", 16, seconds),
                                      lambda: loadgen.breakdown(bad, "closed", 4, seconds))
        log.info("poison mix: valid %s, bad %s", valid.statuses, bad_result.statuses)
        results["poison"] = {"valid": valid.to_dict(), "bad": bad_result.to_dict()}
    if "autoscaling" in sections:  # first: a replica starting on these 2 cores would take them from an overload point
        results["autoscaling"] = _autoscaling(good, capacity.ok_per_second)
        log.info("autoscaling: %s", results["autoscaling"])
    if "overload" in sections:
        results["overload"] = {}
        for label, mode, level in (("2x", "open", 2 * capacity.ok_per_second),
                                   ("10x", "open", 10 * capacity.ok_per_second),
                                   ("1500 clients", "closed", 1500)):
            started = time.time()
            with LimitSampler() as limits:
                result = loadgen.breakdown(good, mode, round(level), seconds)
            server = timings.during(started, time.time())
            log.info("overload %s: %s, p99 of 200s %s ms (server side %s ms, after the first second %s ms)", label,
                     result.statuses, result.p99_ok_ms, server["p99_ok_ms"], server["p99_ok_settled_ms"])
            results["overload"][label] = {**result.to_dict(), "server": server, "limits": limits.samples}
    if "kill" in sections:
        results["replica_kill"] = _kill_a_replica(good)
        log.info("replica kill: %s", {k: v for k, v in results["replica_kill"].items() if k != "load"})
    if "swap" in sections:
        results["hot_swap"] = _hot_swap(good, store, versions, swap_clients)
        log.info("hot swap: %s", {k: v for k, v in results["hot_swap"].items() if k != "load"})
    return results


def _autoscaling(good: Path, capacity: float, limit_s: float = 120) -> dict:
    """2x overload until a second replica takes traffic (Serve's upscale delay is 30 s); then the load stops."""
    started, second = time.monotonic(), None
    stop = threading.Event()
    load = threading.Thread(target=_until, args=(stop, lambda: loadgen.breakdown(good, "open", round(2 * capacity),
                                                                                 5)))
    load.start()
    while time.monotonic() - started < limit_s:
        if len([s for s in _routed_replicas().values() if s > 0]) >= 2:
            second = round(time.monotonic() - started, 1)
            break
        time.sleep(1)
    stop.set()
    load.join()
    return {"second_replica_s": second, "offered_per_second": round(2 * capacity)}


def _until(stop: threading.Event, load) -> None:
    while not stop.is_set():
        load()


def _kill_a_replica(good: Path, seconds: float = 50, kill_at: float = 10) -> dict:
    """SIGKILL one of the two replicas under 16 clients; how many requests fail, and when a new replica serves."""
    before = _routed_replicas()
    result: list[StatusBreakdown] = []
    load = threading.Thread(target=lambda: result.append(loadgen.breakdown(good, "closed", 16, seconds)))
    load.start()
    time.sleep(kill_at)
    pids = subprocess.run(["pgrep", "-f", REPLICA_PROCESS], capture_output=True, text=True).stdout.split()
    killed_at = time.monotonic()
    os.kill(int(pids[0]), signal.SIGKILL)
    replacement_s = None
    while time.monotonic() - killed_at < seconds - kill_at:
        if any(sessions > 0 for name, sessions in _routed_replicas().items() if name not in before):
            replacement_s = round(time.monotonic() - killed_at, 1)
            break
        time.sleep(0.5)
    load.join()
    [breakdown] = result
    failed = breakdown.requests - breakdown.statuses.get("200", 0)
    return {"replicas_before": len(before), "requests": breakdown.requests, "failed": failed,
            "failed_statuses": {k: v for k, v in breakdown.statuses.items() if k != "200"},
            "replacement_serving_s": replacement_s, "kill_at_s": kill_at, "load": breakdown.to_dict()}


def _hot_swap(good: Path, store: ModelStore, versions: list[str], clients: int, seconds: float = 45,
              publish_at: float = 5) -> dict:
    """Publish a new version as LATEST under ``clients``; every replica follows within latest_poll_s plus a load."""
    result: list[StatusBreakdown] = []
    load = threading.Thread(target=lambda: result.append(loadgen.breakdown(good, "closed", clients, seconds)))
    load.start()
    time.sleep(publish_at)
    local = store.fetch(MODEL, versions[0], WORK / "fetch")
    new = local.manifest.model_copy(update={"version": versions[1], "created_at": dt.datetime.now(dt.UTC)})
    store.publish(local.path, new)
    published_at, swapped_s = time.monotonic(), None
    while time.monotonic() - published_at < seconds - publish_at:
        found = _replicas()
        if found and set(found.values()) == {versions[1]}:
            swapped_s = round(time.monotonic() - published_at, 1)
            break
        time.sleep(1)
    load.join()
    [breakdown] = result
    return {"clients": clients, "requests": breakdown.requests,
            "failed": breakdown.requests - breakdown.statuses.get("200", 0),
            "every_replica_on_new_version_s": swapped_s, "load": breakdown.to_dict()}


def _routed_replicas() -> dict[str, int]:
    """Replicas HAProxy routes the app to and holds up, with the requests each has been sent (its stats page)."""
    return {row["svname"]: int(row["stot"] or 0) for row in _replica_rows() if row["status"] == "UP"}


def _replica_rows() -> list[dict[str, str]]:
    """HAProxy's stats page rows of the app's replicas."""
    try:
        rows = httpx.get(STATS, timeout=5).text.lstrip("# ").splitlines()
    except httpx.HTTPError:
        return []
    return [row for row in csv.DictReader(rows)
            if row["pxname"] == "http-destinations" and row["svname"].startswith("SERVE_REPLICA")]


def _replicas(probes: int = 20) -> dict[str, str]:
    """Replica id -> version served, from GET /model over new connections (HAProxy spreads them)."""
    found = {}
    # One client (each new one builds an SSL context: a core's worth at this rate), a new connection per probe.
    with httpx.Client(timeout=5, headers={"Connection": "close"}) as http:
        for _ in range(probes):
            try:
                response = http.get(f"{URL}/model")
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                found[response.json()["replica"]] = response.json()["version"]
    return found


def _together(*loads):
    results: list = [None] * len(loads)
    threads = [threading.Thread(target=lambda i=i, f=f: results.__setitem__(i, f())) for i, f in enumerate(loads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _bench_store() -> tuple[ModelStore, list[str]]:
    """A store of the benchmark's own, holding the local LATEST model; the hot swap publishes a second version."""
    store = ModelStore(str(WORK / "store"))
    source = ModelStore(str(LOCAL_STORE))
    local = source.fetch(MODEL, "latest", WORK / "fetch")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    versions = [f"{stamp}-bench-a", f"{stamp}-bench-b"]
    store.publish(local.path, local.manifest.model_copy(update={"version": versions[0]}))
    return store, versions


def _fixed_limits_run(seconds: float) -> dict:
    """Capacity and the overload points, on two replicas as below, on a server whose HAProxy limits never adapt
    (another process, so that its server starts at the niceness this one's does)."""
    subprocess.run([sys.executable, "-m", "bench.reliability", "--only", "autoscaling", "overload", "--fixed-limits",
                    "--seconds", str(seconds)], cwd=ROOT, check=True)
    run = json.loads((RAW / "reliability-fixed-limits.json").read_text())
    return {"config": run["config"], "capacity": run["capacity"], "overload": run["overload"]}


def _config(store: ModelStore, fixed_limits: bool = False) -> Path:
    """configs/serve/local.yaml, serving the benchmark's store (with fixed HAProxy limits if asked)."""
    config = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
    config["applications"][0]["deployments"][0]["user_config"]["model_uri"] = f"{store.uri}/{MODEL}"
    if fixed_limits:
        config["applications"][0]["args"]["inflight_target_ms"] = 0
    path = WORK / "serve.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def markdown(summary: dict) -> str:
    config, capacity = summary["config"], summary["capacity"]
    valid, bad = summary["poison"]["valid"], summary["poison"]["bad"]
    lines = [
        f"Reliability benchmark, {summary['ran_at']}: {summary['machine']['cpus']} CPUs. configs/serve/local.yaml "
        f"(queue budget {config['queue_budget_ms']} ms, in-flight target {config['inflight_target_ms']} ms, at most "
        f"{config['max_ongoing_requests']} in flight and {config['max_queued_requests']} queued per replica, "
        f"autoscaling target {config['target_ongoing_requests']})"
        f"; vegeta on loopback at nice {config['vegeta_niceness']} (the replicas at {loadgen.NICENESS}). Capacity: "
        f"{capacity['ok_per_second']:,.0f} req/s at 16 clients (p99 {capacity['p99_ok_ms']} ms).",
        "",
        f"**Poison mix** (16 valid + 4 bad clients): valid requests {_share(valid, '200')} answered 200 "
        f"({valid['statuses'].get('200', 0):,} of {valid['requests']:,}), p99 {valid['p99_ok_ms']} ms; bad requests "
        f"{_share(bad, '422')} answered 422.",
        "",
        "**Overload**:",
        "",
        "| load | offered | 200 | 503 | errors | 200/s | 200s: p50 / p99 ms, client | 200s: p50 / p99 ms, HAProxy "
        "(of which queued, p99) | 200s: p99 ms after the first second, HAProxy | limit per replica (median) | "
        "503s: p50 / p99 ms, client | first 503 | 503 with Retry-After |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in summary["overload"].items():
        offered = f"{r['level']:,.0f} req/s" if r["mode"] == "open" else f"{r['level']:,.0f} clients"
        server = r["server"]
        limits = [limit for _, _, limit, _ in r["limits"]]
        lines.append(f"| {label} | {offered} | {_share(r, '200')} | {_share(r, '503')} | {_share(r, 'error')} | "
                     f"{r['ok_per_second']:,.0f} | {r['p50_ok_ms']} / {r['p99_ok_ms']} | {server['p50_ok_ms']} / "
                     f"{server['p99_ok_ms']} ({server['p99_ok_queued_ms']}) | {server['p99_ok_settled_ms']} | "
                     f"{_median(limits)} | {r['p50_503_ms']} / {r['p99_503_ms']} | {_seconds(r['first_503_s'])} | "
                     f"{_percent(r['retry_after_share'])} |")
    if "fixed_limits" in summary:
        fixed = summary["fixed_limits"]
        lines += ["", f"**The same points with fixed limits** (`inflight_target_ms: 0`, a server of its own started "
                      f"just before; capacity {fixed['capacity']['ok_per_second']:,.0f} req/s at 16 clients): ",
                  "", "| load | 200/s fixed / adaptive | 200s: p99 ms at HAProxy, fixed / adaptive | after the first "
                      "second, fixed / adaptive |", "|---|---|---|---|"]
        for label, r in fixed["overload"].items():
            a = summary["overload"][label]
            lines.append(f"| {label} | {r['ok_per_second']:,.0f} / {a['ok_per_second']:,.0f} | "
                         f"{r['server']['p99_ok_ms']} / {a['server']['p99_ok_ms']} | "
                         f"{r['server']['p99_ok_settled_ms']} / {a['server']['p99_ok_settled_ms']} |")
    kill, swap, scale = summary["replica_kill"], summary["hot_swap"], summary["autoscaling"]
    lines += [
        "",
        f"**Autoscaling**: at 2x overload ({scale['offered_per_second']:,} req/s offered) a second replica took "
        f"traffic after {_seconds(scale['second_replica_s'])}.",
        "",
        f"**Replica SIGKILL** (one of {kill['replicas_before']}, under 16 clients): {kill['failed']:,} of "
        f"{kill['requests']:,} requests failed {kill['failed_statuses'] or ''}; a replacement replica answered "
        f"{_seconds(kill['replacement_serving_s'])} after the kill.",
        "",
        f"**Hot swap under {swap['clients']} clients** (new version published as LATEST): {swap['failed']:,} of "
        f"{swap['requests']:,} requests failed; every replica answered with the new version "
        f"{_seconds(swap['every_replica_on_new_version_s'])} after the publish.",
    ]
    return "\n".join(lines) + "\n"


def _share(result: dict, status: str) -> str:
    return f"{result['statuses'].get(status, 0) / max(result['requests'], 1):.1%}"


def _median(values: list[int]) -> str:
    return "-" if not values else f"{float(np.median(values)):g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _seconds(value: float | None) -> str:
    return "never (within the run)" if value is None else f"{value:.1f} s"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (overload_ax, limit_ax, kill_ax) = plt.subplots(1, 3, figsize=(17, 4.5))
    labels = ["capacity", *summary["overload"]]
    points = [summary["capacity"], *summary["overload"].values()]
    ok = [p["ok_per_second"] for p in points]
    shed = [p["statuses"].get("503", 0) / p["seconds"] for p in points]
    overload_ax.bar(labels, ok, label="200/s", color="tab:green")
    overload_ax.bar(labels, shed, bottom=ok, label="503/s", color="tab:orange")
    overload_ax.set_ylabel("answers per second")
    overload_ax.set_title("answers under overload; p99 of 200s (ms): client / HAProxy", fontsize=10)
    for i, p in enumerate(points):
        server = f" / {p['server']['p99_ok_ms']}" if "server" in p else ""
        overload_ax.annotate(f"{p['p99_ok_ms']}{server}", (i, ok[i] + shed[i]), ha="center", va="bottom", fontsize=8)
    overload_ax.legend()
    offset = 0.0
    for label, point in summary["overload"].items():  # the points one after another, each from its own start
        by_replica: dict[str, list[tuple[float, int]]] = {}
        for at, replica, limit, _ in point["limits"]:
            by_replica.setdefault(replica, []).append((offset + at, limit))
        for i, series in enumerate(by_replica.values()):
            limit_ax.step([t for t, _ in series], [v for _, v in series], where="post",
                          color="tab:blue" if i == 0 else "tab:purple")
        limit_ax.annotate(label, (offset, summary["config"]["max_ongoing_requests"]), fontsize=8, va="bottom")
        offset += point["seconds"]
    limit_ax.set_xlabel("second of the overload points")
    limit_ax.set_ylabel("requests in flight allowed per replica")
    limit_ax.set_title(f"HAProxy's limit per replica (target {summary['config']['inflight_target_ms']} ms in flight)",
                       fontsize=10)
    timeline = summary["replica_kill"]["load"]["timeline"]
    kill_ax.plot([t[0] for t in timeline], label="200")
    kill_ax.plot([t[1] for t in timeline], label="not 200")
    kill_ax.axvline(summary["replica_kill"]["kill_at_s"], color="red", linestyle="--", label="SIGKILL")
    kill_ax.set_xlabel("second of the run")
    kill_ax.set_ylabel("answers per second")
    kill_ax.set_title("16 clients, one of 2 replicas killed")
    kill_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
