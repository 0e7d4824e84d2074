"""What the application metrics cost: the destination endpoint with them on and off (the ``metrics`` arg of
serve_apps.core.settings), same model, same load, on configs/serve/local.yaml (HAProxy direct ingress).

    python -m bench.metrics_overhead        (part of make bench; about 6 minutes on 2 cores)

Single requests at 16 clients and Arrow batches of 1,024 rows at 1 client, closed loop, on, off, on, off (so that
a drift of the machine over the run falls on both); the overhead is 1 - on/off of the mean throughputs. The goal
(issue: cheap enough to leave on) is at most 5% at 16 clients. Results go to bench/results/metrics_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import statistics
import sys
from pathlib import Path

import httpx
import yaml

from bench import loadgen, servers
from bench.loadgen import Target
from bench.serving import ARROW_STREAM, arrow_stream, request_bodies
from recsys.artifact_store import ModelStore
from recsys.destinations.features import Vocabulary
from recsys.manifest import VOCABULARY_FILE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RAW = RESULTS / "raw"
URL = "http://127.0.0.1:8000/destinations"
GOAL = 0.05
log = logging.getLogger("bench.metrics_overhead")


def config(metrics: bool) -> Path:
    """configs/serve/local.yaml with only the destination app, its metrics on or off."""
    serve = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
    serve["applications"] = [a for a in serve["applications"] if a["name"] == "destinations"]
    serve["applications"][0]["args"]["metrics"] = metrics
    path = RAW / f"metrics-{'on' if metrics else 'off'}.yaml"
    path.write_text(yaml.safe_dump(serve))
    return path


def measure(metrics: bool, single: Path, batch: Path, seconds: float) -> dict:
    label = f"metrics-{'on' if metrics else 'off'}"
    log_path = RAW / f"{label}.log"
    process = servers.start([sys.executable, "-m", "serve_apps.local", str(config(metrics))], ROOT, log_path)
    try:
        servers.wait_ready(label, process, lambda: httpx.get(f"{URL}/model", timeout=5).status_code == 200,
                           log_path)
        loadgen.closed_loop(single, 16, 5)  # warm connections and caches
        singles = loadgen.closed_loop(single, 16, seconds)
        batches = loadgen.closed_loop(batch, 1, seconds)
        log.info("%s: single ×16 %.0f req/s (p99 %.1f ms), arrow ×1024 %.0f rows/s", label, singles.throughput,
                 singles.p99_ms or 0, batches.throughput * 1024)
        return {"metrics": metrics, "single_16_rps": round(singles.throughput, 1),
                "single_16_p99_ms": round(singles.p99_ms, 1),
                "arrow_1024_rows_per_s": round(batches.throughput * 1024, 1)}
    finally:
        servers.stop(process)


def report(result: dict) -> str:
    lines = ["| run | metrics | single ×16 req/s | single ×16 p99 ms | Arrow ×1024 rows/s |",
             "|---|---|---|---|---|"]
    lines += [f"| {i + 1} | {'on' if run['metrics'] else 'off'} | {run['single_16_rps']:.0f} | "
              f"{run['single_16_p99_ms']:.1f} | {run['arrow_1024_rows_per_s']:.0f} |"
              for i, run in enumerate(result["runs"])]
    overhead = result["overhead"]
    lines += ["", f"Overhead (1 − on/off of the means): single ×16 {overhead['single_16_rps']:.1%}, Arrow ×1024 "
              f"{overhead['arrow_1024_rows_per_s']:.1%}; goal ≤ {result['goal']:.0%} at 16 clients: "
              f"{'met' if result['met'] else 'NOT met'}. {result['date']}, {result['machine']}, "
              f"{result['seconds']:.0f} s per point."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each load point")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    RAW.mkdir(parents=True, exist_ok=True)
    local = ModelStore(str(ROOT / ".data" / "models")).fetch("destinations", "latest",
                                                              ROOT / ".data" / "bench" / "model-cache")
    bodies = request_bodies(Vocabulary.model_validate_json((local.path / VOCABULARY_FILE).read_text()))
    single = loadgen.write_targets([Target(f"{URL}/recommend", body) for body in bodies],
                                   RAW / "overhead-single.targets")
    batch = loadgen.write_targets(
        [Target(f"{URL}/recommend/batch", arrow_stream(bodies), ARROW_STREAM, ARROW_STREAM)],
        RAW / "overhead-batch.targets")
    runs = [measure(metrics, single, batch, args.seconds) for metrics in (True, False, True, False)]

    def mean(metrics: bool, key: str) -> float:
        return statistics.mean(run[key] for run in runs if run["metrics"] is metrics)

    overhead = {key: round(1 - mean(True, key) / mean(False, key), 4)
                for key in ("single_16_rps", "arrow_1024_rows_per_s")}
    result = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "model_version": local.manifest.version, "seconds": args.seconds, "runs": runs,
              "overhead": overhead, "goal": GOAL, "met": overhead["single_16_rps"] <= GOAL}
    (RESULTS / "metrics_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "metrics_overhead.md").write_text(report(result))
    log.info("overhead: %s", overhead)


if __name__ == "__main__":
    main()
