"""Client benchmark: 10,000 concurrent single calls through the Python client (client/recsys_client), coalesced
into batch requests, against the same calls sent one HTTP request each, on configs/serve/local.yaml (HAProxy).

    python -m bench.client            (part of make bench; about 1 minute)

Both runs use the same client code and connection limits; only coalescing differs (one row per request and 64
requests in flight, vs the client's defaults: rows lingering 2 ms, up to the endpoint's 1,024 rows per request,
4 requests in flight). Each call's latency counts from the moment it is made to its answer. The answers of the
two runs are compared. Results go to bench/results/client.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from bench import servers
from bench.serving import request_bodies
from recsys.artifact_store import ModelStore
from recsys.destinations.features import Vocabulary
from recsys.manifest import VOCABULARY_FILE
from recsys_client import AsyncClient, ClientOptions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
URL = "http://127.0.0.1:8000"
MODES = {"one request per call": ClientOptions(max_rows=1, max_in_flight=64),
         "coalesced": ClientOptions()}
log = logging.getLogger("bench.client")


def run(trips: list[dict], options: ClientOptions) -> tuple[dict, list]:
    latencies = np.zeros(len(trips))
    requests = 0

    async def count(_: httpx.Request) -> None:
        nonlocal requests
        requests += 1

    async def scenario() -> tuple[float, list]:
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64), event_hooks={"request": [count]})
        async with AsyncClient(URL, options, http=http) as client:
            await client.destinations.recommend(trips[0])  # the endpoint's contract, a first connection

            async def call(i: int):
                started = time.perf_counter()
                answer = await client.destinations.recommend(trips[i])
                latencies[i] = time.perf_counter() - started
                return answer

            started = time.perf_counter()
            answers = await asyncio.gather(*(call(i) for i in range(len(trips))))
            return time.perf_counter() - started, answers

    wall, answers = asyncio.run(scenario())
    calls = len(trips)
    return {"calls": calls, "wall_s": round(wall, 3), "calls_per_s": round(calls / wall, 1),
            "http_requests": requests - 2,  # less the contract and warm-up calls
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1)}, answers


def same_answers(one: list, coalesced: list) -> dict:
    """Cities and versions compared exactly, scores to float32 precision (a batch of 1,024 and a batch of 1 are
    different matrix shapes to TensorFlow, whose kernels may round the last bit differently)."""
    cities = all(a.cities == b.cities and a.model_version == b.model_version for a, b in zip(one, coalesced))
    scores = all(np.allclose(a.scores, b.scores, rtol=1e-6, atol=1e-7) for a, b in zip(one, coalesced))
    return {"identical_answers": cities and scores and len(one) == len(coalesced)}


def markdown(summary: dict) -> str:
    lines = [f"Client benchmark, {summary['ran_at']}: {summary['machine']['cpus']} CPUs; {summary['calls']:,} "
             f"concurrent `destinations.recommend` calls through the Python client, HAProxy ingress.", "",
             "| mode | wall s | calls/s | HTTP requests | p50 ms per call | p99 ms per call |", "|---|---|---|---|---|---|"]
    for mode, r in summary["modes"].items():
        lines.append(f"| {mode} | {r['wall_s']:.2f} | {r['calls_per_s']:,.0f} | {r['http_requests']:,} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    lines += ["", f"Coalesced / one request per call: **{summary['speedup']:.1f}×** faster (target ≥ 5×); answers "
                  f"identical: **{summary['identical_answers']}**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    local = ModelStore(str(ROOT / ".data" / "models")).fetch("destinations", "latest",
                                                              ROOT / ".data" / "bench" / "model-cache")
    vocabulary = Vocabulary.model_validate_json((local.path / VOCABULARY_FILE).read_text())
    trips = request_bodies(vocabulary, n=args.calls, seed=3)
    log_path = RESULTS / "raw" / "client-serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = servers.start([sys.executable, "-m", "serve_apps.local", "configs/serve/local.yaml"], ROOT, log_path)
    try:
        servers.wait_ready("serve", process, lambda: httpx.post(f"{URL}/destinations/recommend", json=trips[0],
                                                                timeout=10).status_code == 200, log_path)
        results, answers = {}, {}
        for mode, options in MODES.items():
            results[mode], answers[mode] = run(trips, options)
            log.info("%s: %s", mode, results[mode])
    finally:
        servers.stop(process)
    one, coalesced = results["one request per call"], results["coalesced"]
    summary = {"benchmark": "client", "ran_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "calls": args.calls,
               "modes": results, "speedup": round(one["wall_s"] / coalesced["wall_s"], 2),
               **same_answers(answers["one request per call"], answers["coalesced"])}
    (RESULTS / "client.json").write_text(json.dumps(summary, indent=2))
    (RESULTS / "client.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
