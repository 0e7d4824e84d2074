"""Serving benchmark: this project's Serve app against the in-process limit and against peer servers, in one run.

    python -m bench.serving            (make bench; about 15 minutes on 2 cores)

1. The limit: the published SavedModel called in-process with TensorFlow (rows/s at the best batch size, batch-1
   latency). Every other figure is also given as a ratio to it.
2. This project: configs/serve/local.yaml under Ray Serve's default proxy and under HAProxy direct ingress,
   single-request and batch endpoints, batch bodies as JSON and as Arrow IPC streams.
3. Peers on the same SavedModel: plain FastAPI + uvicorn, KServe's ModelServer, BentoML (adaptive batching).
4. The same load for all (bench/loadgen.py): closed loop at 1, 16 and 64 clients, open loop at fixed arrival rates.
5. Cold start of a replica (bench/cold_start.py), for the smoke model and a ~100 MB model, from disk and HDFS.

Results go to bench/results/serving.{json,md,png}; a py-spy profile of the Serve replica under load says where the
time goes.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

from bench import cold_start, loadgen, peers_env, report, servers
from bench.loadgen import LoadResult, Target
from recsys.artifact_store import ModelStore
from recsys.destinations.features import Vocabulary
from recsys.manifest import SAVED_MODEL_DIR, VOCABULARY_FILE
from recsys.destinations.runtime import Predictor, pad_trips

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RAW = RESULTS / "raw"
STORE, MODEL = ROOT / ".data" / "models", "destinations"
SERVE_URL = "http://127.0.0.1:8000/destinations"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
CONCURRENCY = (1, 16, 64)
RATES = (250, 500, 1000)
BATCH_ROWS = (64, 1024)  # trips per batch request: a page of results, and the API's maximum
BATCH_CONCURRENCY = (1, 4)
PROFILED = ("single, 64 clients", "batch ×1024, 4 clients", "batch ×1024 arrow, 1 client")  # py-spy there
log = logging.getLogger("bench.serving")


@dataclass
class System:
    """A server under test: how to start it and how to address it."""

    name: str
    command: list[str]
    ready_url: str
    single_url: str
    wrap_single: Callable[[dict], dict]  # our request body -> the system's native body
    batch_url: str | None = None
    wrap_batch: Callable[[list[dict]], dict] | None = None
    env: dict[str, str] = field(default_factory=dict)
    profile_process: str | None = None  # pgrep -f pattern of the process that runs the model
    arrow_batch: bool = False  # the batch endpoint also reads and answers Arrow IPC streams


def systems(model_dir: Path, python: Path) -> list[System]:
    local = ["-m", "serve_apps.local", "configs/serve/local.yaml"]
    serve_batch = {"batch_url": f"{SERVE_URL}/recommend/batch", "wrap_batch": lambda bodies: {"requests": bodies},
                   "arrow_batch": True}
    found = [
        System("ray-serve-haproxy", [str(python), *local], f"{SERVE_URL}/model", f"{SERVE_URL}/recommend",
               lambda body: body, profile_process="ServeReplica:destinations", **serve_batch),
        System("ray-serve-proxy", [str(python), *local, "--default-proxy"], f"{SERVE_URL}/model",
               f"{SERVE_URL}/recommend", lambda body: body, **serve_batch),
        System("fastapi-uvicorn", [str(python), "-m", "uvicorn", "bench.peers.fastapi_app:app", "--host", "127.0.0.1",
                                   "--port", "8101", "--no-access-log"],
               "http://127.0.0.1:8101/docs", "http://127.0.0.1:8101/recommend", lambda body: body,
               env={"MODEL_DIR": str(model_dir)}),
    ]
    kserve = peers_env.python("kserve")
    if kserve:
        found.append(System(
            "kserve", [str(kserve), "-m", "bench.peers.kserve_model"], "http://127.0.0.1:8102/v1/models/destinations",
            "http://127.0.0.1:8102/v1/models/destinations:predict", lambda body: {"instances": [body]},
            batch_url="http://127.0.0.1:8102/v1/models/destinations:predict",
            wrap_batch=lambda bodies: {"instances": bodies}, env={"MODEL_DIR": str(model_dir), "PORT": "8102"}))
    bentoml = peers_env.executable("bentoml", "bentoml")
    if bentoml:
        found.append(System(
            "bentoml", [str(bentoml), "serve", "bench.peers.bentoml_service:Destinations", "--host", "127.0.0.1",
                        "--port", "8103"], "http://127.0.0.1:8103/readyz", "http://127.0.0.1:8103/recommend",
            lambda body: {"trips": [body]}, batch_url="http://127.0.0.1:8103/recommend",
            wrap_batch=lambda bodies: {"trips": bodies}, env={"MODEL_DIR": str(model_dir)}))
    return found


def in_process_limit(model_dir: Path, bodies: list[dict]) -> dict:
    """The published SavedModel called in-process: rows/s per batch size, and batch-1 latency."""
    predictor = Predictor(model_dir)
    rows = {}
    for batch in (1, 8, 32, 64, 128, 256, 512, 1024):
        picked = [bodies[i % len(bodies)] for i in range(batch)]
        args = (pad_trips([b["cities"] for b in picked], width=8), [b["booker_country"] for b in picked],
                [b["device_class"] for b in picked], np.array([b.get("affiliate_id") or 0 for b in picked]), 4)
        predictor.predict(*args)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < 2.0:
            predictor.predict(*args)
            calls += 1
        rows[batch] = calls * batch / (time.perf_counter() - started)
        log.info("in-process batch %4d: %8.0f rows/s", batch, rows[batch])
    single = [bodies[0]]
    args = (pad_trips([single[0]["cities"]], width=8), [single[0]["booker_country"]], [single[0]["device_class"]],
            np.zeros(1, np.int64), 4)
    latencies = []
    for _ in range(500):
        started = time.perf_counter()
        predictor.predict(*args)
        latencies.append((time.perf_counter() - started) * 1000)
    best = max(rows, key=rows.get)
    return {"rows_per_second": rows, "best_batch": best, "best_rows_per_second": rows[best],
            "batch1_p50_ms": statistics.median(latencies), "batch1_p99_ms": float(np.percentile(latencies, 99))}


def run_system(system: System, bodies: list[dict], seconds: float) -> dict:
    log_path = RAW / f"{system.name}.log"
    # Ray runs its replicas at nice 15 on its own; peers are started there too.
    start = servers.start if system.name in report.OURS else servers.start_peer
    process = start(system.command, ROOT, log_path, system.env)
    started = time.monotonic()
    try:
        servers.wait_ready(system.name, process, lambda: httpx.get(system.ready_url, timeout=5).status_code == 200
                           and httpx.post(system.single_url, json=system.wrap_single(bodies[0]),
                                          timeout=10).status_code == 200, log_path)
        startup = time.monotonic() - started
        log.info("%s ready after %.1f s", system.name, startup)
        single = loadgen.write_targets([Target(system.single_url, system.wrap_single(b)) for b in bodies],
                                       RAW / f"{system.name}-single.targets")
        loadgen.closed_loop(single, 16, min(5, seconds))  # warm connections, autoscaling, caches
        results: dict = {"startup_seconds": round(startup, 1), "single": [], "batch": [], "profiles": {}}

        def closed(targets: Path, concurrency: int, label: str) -> LoadResult:
            """One closed-loop point; for the PROFILED ones, a second run under py-spy (which takes a good share
            of the 2 cores, so its run is not the one reported) records where the replica's time goes."""
            result = loadgen.closed_loop(targets, concurrency, seconds)
            profile = _start_profile(system, label, seconds) if label in PROFILED else None
            if profile:
                loadgen.closed_loop(targets, concurrency, seconds)
                results["profiles"][label] = _finish_profile(profile)
            return result

        for concurrency in CONCURRENCY:
            result = closed(single, concurrency, f"single, {concurrency} clients")
            results["single"].append(result.to_dict())
            _log(system.name, "single", result)
        for rate in RATES:
            result = loadgen.open_loop(single, rate, seconds)
            results["single"].append(result.to_dict())
            _log(system.name, "single", result)
        for rows in BATCH_ROWS if system.batch_url else ():
            chunks = [bodies[i:i + rows] for i in range(0, len(bodies) - rows + 1, rows)]
            bodies_as = {"json": [Target(system.batch_url, system.wrap_batch(c)) for c in chunks]}
            if system.arrow_batch:
                bodies_as["arrow"] = [Target(system.batch_url, arrow_stream(c), ARROW_STREAM, ARROW_STREAM)
                                      for c in chunks]
            for body, targets in bodies_as.items():
                batch = loadgen.write_targets(targets, RAW / f"{system.name}-batch{rows}-{body}.targets")
                for concurrency in BATCH_CONCURRENCY:
                    label = f"batch ×{rows}{' arrow' if body == 'arrow' else ''}, {concurrency} clients"
                    result = closed(batch, concurrency, label)
                    results["batch"].append({**result.to_dict(), "rows_per_request": rows, "body": body,
                                             "rows_per_second": round(result.throughput * rows, 1)})
                    _log(system.name, f"b×{rows} {body}", result)
        return results
    finally:
        servers.stop(process)


def _start_profile(system: System, label: str, seconds: float) -> tuple[subprocess.Popen, Path] | None:
    if not system.profile_process:
        return None
    pids = subprocess.run(["pgrep", "-f", system.profile_process], capture_output=True, text=True).stdout.split()
    if not pids:
        return None
    out = RAW / f"{system.name}-{label.replace(' ', '').replace(',', '-').replace('×', 'x')}.pyspy.txt"
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", pids[0], "--duration",
               str(int(seconds)), "--rate", "100", "--format", "raw", "--nonblocking", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def _finish_profile(profile: tuple[subprocess.Popen, Path]) -> dict:
    process, path = profile
    process.wait(timeout=60)
    if not path.exists():
        return {}
    by_area: collections.Counter = collections.Counter()
    by_function: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        by_function[frames[-1]] += int(count)
        by_area[_area(frames)] += int(count)
    busy = total - by_area.pop("idle", 0)
    return {"samples": total, "busy_samples": busy,
            "areas": {k: round(v / busy, 3) for k, v in by_area.most_common()},
            "top_functions": [(f, round(c / total, 3)) for f, c in by_function.most_common(12)]}


IDLE_LEAVES = ("_run_user_code_event_loop", "_worker (concurrent/futures", "Worker.main_loop", "Thread.run",
               "select (selectors", "wait (threading", "_wait_for_tstate_lock")
LAYERS = (("tensorflow", "TensorFlow (model)"), ("pydantic", "pydantic validation"), ("json/", "JSON"),
          ("serve_apps/", "app code"), ("recsys/", "app code"), ("fastapi/", "FastAPI/Starlette/uvicorn"),
          ("starlette/", "FastAPI/Starlette/uvicorn"), ("uvicorn/", "FastAPI/Starlette/uvicorn"),
          ("ray/serve", "Ray Serve"), ("ray/", "Ray core"), ("asyncio/", "asyncio"))


def _area(frames: list[str]) -> str:
    """Which layer a sample (leaf last) spends its time in: the innermost frame that belongs to a known layer."""
    if any(marker in frames[-1] for marker in IDLE_LEAVES):
        return "idle"
    for frame in reversed(frames):
        for marker, layer in LAYERS:
            if marker in frame:
                return layer
    return "other"


def _log(name: str, kind: str, r: LoadResult) -> None:
    log.info("%-18s %-6s %-6s %6s: %7.0f req/s, p50 %6.1f ms, p99 %7.1f ms, success %.3f", name, kind, r.mode,
             int(r.level), r.throughput, r.p50_ms, r.p99_ms, r.success)


def arrow_stream(bodies: list[dict]) -> bytes:
    """Batch requests as the Arrow IPC stream the batch endpoint reads: a column per field."""
    table = pa.Table.from_pylist(bodies)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def request_bodies(vocabulary: Vocabulary, n: int = 1024, seed: int = 0) -> list[dict]:
    """Realistic requests: known cities (popular more often), the trip's length varying, k = 4."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(vocabulary.cities) + 1)
    weights /= weights.sum()
    bodies = []
    for i in range(n):
        length = int(rng.integers(1, 10))
        cities = rng.choice(vocabulary.cities, size=length, replace=False, p=weights).tolist()
        bodies.append({"cities": cities,
                       "booker_country": vocabulary.booker_countries[i % len(vocabulary.booker_countries)],
                       "device_class": vocabulary.device_classes[i % len(vocabulary.device_classes)],
                       "affiliate_id": int(vocabulary.affiliates[i % len(vocabulary.affiliates)]), "k": 4})
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each load point")
    parser.add_argument("--only", nargs="*", help="system names to run (default: all)")
    parser.add_argument("--skip-cold-start", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    RAW.mkdir(parents=True, exist_ok=True)

    store = ModelStore(str(STORE))
    local = store.fetch(MODEL, "latest", ROOT / ".data" / "bench" / "model-cache")
    vocabulary = Vocabulary.model_validate_json((local.path / VOCABULARY_FILE).read_text())
    bodies = request_bodies(vocabulary)
    model_dir = local.path / SAVED_MODEL_DIR
    log.info("model %s/%s (%d cities)", MODEL, local.manifest.version, len(vocabulary.cities))
    peers_env.ensure_all()

    limit = in_process_limit(model_dir, bodies)
    results = {}
    for system in systems(model_dir, Path(sys.executable)):
        if args.only and system.name not in args.only:
            continue
        log.info("=== %s", system.name)
        try:
            results[system.name] = run_system(system, bodies, args.seconds)
        except (RuntimeError, TimeoutError, subprocess.SubprocessError) as err:
            log.error("%s failed: %s", system.name, err)
            results[system.name] = {"error": str(err)}
    cold = [] if args.skip_cold_start else cold_start.measure(ROOT / ".data" / "bench")
    summary = {
        "benchmark": "serving",
        "ran_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": {"name": MODEL, "version": local.manifest.version, "cities": len(vocabulary.cities)},
        "load": {"seconds_per_point": args.seconds, "concurrency": CONCURRENCY, "rates": RATES,
                 "batch_rows": BATCH_ROWS, "generator": loadgen.VEGETA},
        "limit": limit,
        "systems": results,
        "cold_start": cold,
    }
    summary["targets"] = report.targets(summary)
    out = RAW if args.only or args.skip_cold_start else RESULTS  # a partial run never replaces the full results
    (out / "serving.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "serving.md").write_text(report.markdown(summary))
    report.plot(summary, out / "serving.png")
    print(report.markdown(summary))
    log.info("results in %s", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
