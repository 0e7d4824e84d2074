"""Serving both models and the trip answer that composes them: each endpoint against the in-process limit of the
same SavedModels, in one run of configs/serve/local.yaml (HAProxy direct ingress, as `make run`).

    python -m bench.composition        (part of make bench; about 4 minutes on 2 cores)

1. The limits, in-process with TensorFlow: the ranking model's searches/s at a few batch sizes and its batch-1
   latency; a trip answer's work done back to back in one thread (one destination call, one ranking call for the
   chosen cities), its latency and trips/s.
2. The endpoints under the same closed-loop load (bench/loadgen.py) at 1, 16 and 64 clients: the destination call,
   the ranking call (single, and batches of 64 searches), and the trip answer.
3. The composition's cost: the trip answer's p99 at 16 clients against the destination call's, in pairs run back
   to back (destinations, then trips) so that both sides of each ratio see the same machine; the median pair is
   the figure (this machine's speed drifts by a third between minutes).

Results go to bench/results/composition.{json,md,png}.
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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from bench import loadgen, servers
from bench.loadgen import LoadResult, Target
from bench.serving import request_bodies
from recsys.accommodations.catalogue import CATALOGUE_FILE, Catalogue
from recsys.accommodations.runtime import Ranker, Searches
from recsys.artifact_store import ModelStore
from recsys.destinations.features import Vocabulary
from recsys.destinations.runtime import Predictor, pad_trips
from recsys.manifest import SAVED_MODEL_DIR, VOCABULARY_FILE
from recsys.trip_answer import NextStays, property_searches

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RAW = RESULTS / "raw"
STORE = ROOT / ".data" / "models"
URL = "http://127.0.0.1:8000"
CONCURRENCY = (1, 16, 64)
BATCH_SEARCHES, BATCH_CONCURRENCY = 64, (1, 4)
PAIRS = 3  # back-to-back (destinations, trips) runs at 16 clients for the trip's cost
STAY = {"checkin": "2026-12-18", "nights": 2, "adults": 2}
PROPERTIES = {"k": 4, "cities_with_properties": 3, "properties_per_city": 3}  # the trips defaults
log = logging.getLogger("bench.composition")


def ranking_bodies(catalogue: Catalogue, destinations: list[dict], n: int = 1024, seed: int = 0) -> list[dict]:
    """Searches in the cities the catalogue knows (popular ones more often), with varied stays and parties."""
    rng = np.random.default_rng(seed)
    cities, counts = np.unique(catalogue.city_id, return_counts=True)
    chosen = rng.choice(cities, size=n, p=counts / counts.sum())
    return [{"city_id": int(city), "booker_country": destinations[i % len(destinations)]["booker_country"],
             "device_class": destinations[i % len(destinations)]["device_class"],
             "checkin": str(dt.date(2026, 12, 1) + dt.timedelta(days=int(rng.integers(0, 60)))),
             "nights": int(rng.integers(1, 8)), "adults": int(rng.integers(1, 4)), "children": int(rng.integers(0, 3)),
             "rooms": 1, "k": 10} for i, city in enumerate(chosen)]


def _context(bodies: list[dict]) -> dict:
    return Searches.from_rows(bodies).context()


def _candidates(catalogue: Catalogue, cities) -> tuple[np.ndarray, np.ndarray]:
    lists = [catalogue.of_city(city) for city in cities]
    width = max(len(ids) for ids in lists)
    ids = np.zeros((len(lists), width), dtype=np.int64)
    for row, city_ids in enumerate(lists):
        ids[row, :len(city_ids)] = city_ids
    return ids, np.zeros(ids.shape, np.float32)


def _timed(call, seconds: float = 2.0) -> tuple[float, list[float]]:
    """Calls per second of ``call`` over ``seconds``, and each call's milliseconds."""
    call()
    latencies, started = [], time.perf_counter()
    while time.perf_counter() - started < seconds:
        begun = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - begun) * 1000)
    return len(latencies) / (time.perf_counter() - started), latencies


def in_process_limits(predictor: Predictor, ranker: Ranker, catalogue: Catalogue, destinations: list[dict],
                      searches: list[dict]) -> dict:
    ranking = {}
    for batch in (1, 8, 64):
        picked = searches[:batch]
        ids, prices = _candidates(catalogue, [b["city_id"] for b in picked])
        calls, _ = _timed(lambda: ranker.rank(_context(picked), ids, prices, 10))
        ranking[batch] = calls * batch
        log.info("in-process ranking, batch %3d: %8.0f searches/s", batch, ranking[batch])
    ids, prices = _candidates(catalogue, [searches[0]["city_id"]])
    _, single = _timed(lambda: ranker.rank(_context(searches[:1]), ids, prices, 10))

    def trip(body: dict) -> None:
        top, _ = predictor.predict(pad_trips([body["cities"]], width=8), [body["booker_country"]],
                                   [body["device_class"]], np.array([body.get("affiliate_id") or 0]), PROPERTIES["k"])
        stay = NextStays(booker_country=[body["booker_country"]], device_class=[body["device_class"]],
                         checkin=[STAY["checkin"]], nights=[STAY["nights"]], adults=[STAY["adults"]], children=[0],
                         rooms=[1])
        chosen, _ = property_searches(stay, top.tolist(), PROPERTIES["cities_with_properties"])
        ids, prices = _candidates(catalogue, chosen.city_id)
        ranker.rank(chosen.context(), ids, prices, PROPERTIES["properties_per_city"])

    trips_per_second, trip_latencies = _timed(lambda: trip(destinations[0]))
    return {"ranking_searches_per_second": ranking, "ranking_best_searches_per_second": max(ranking.values()),
            "ranking_batch1_p50_ms": statistics.median(single),
            "ranking_batch1_p99_ms": float(np.percentile(single, 99)),
            "trips_per_second": trips_per_second, "trip_p50_ms": statistics.median(trip_latencies),
            "trip_p99_ms": float(np.percentile(trip_latencies, 99))}


def measure(destinations: list[dict], searches: list[dict], seconds: float) -> dict:
    log_path = RAW / "composition-serve.log"
    process = servers.start([sys.executable, "-m", "serve_apps.local", "configs/serve/local.yaml"], ROOT, log_path)
    trips = [{**d, **STAY, **PROPERTIES} for d in destinations]
    endpoints = {
        "destinations": (f"{URL}/destinations/recommend", destinations),
        "accommodations": (f"{URL}/accommodations/rank", searches),
        "trips": (f"{URL}/trips/recommend", trips),
    }
    try:
        servers.wait_ready("serve (3 applications)", process, lambda: all(
            httpx.post(url, json=bodies[0], timeout=10).status_code == 200 for url, bodies in endpoints.values())
            and not httpx.post(endpoints["trips"][0], json=trips[0], timeout=10).json()["properties_omitted"],
            log_path)
        results: dict = {"single": {}, "batch": []}
        for name, (url, bodies) in endpoints.items():
            targets = loadgen.write_targets([Target(url, b) for b in bodies], RAW / f"composition-{name}.targets")
            loadgen.closed_loop(targets, 16, min(5, seconds))  # warm connections and replicas
            results["single"][name] = []
            for concurrency in CONCURRENCY:
                result = loadgen.closed_loop(targets, concurrency, seconds)
                results["single"][name].append(result.to_dict())
                _log(name, result)
        chunks = [searches[i:i + BATCH_SEARCHES] for i in range(0, len(searches), BATCH_SEARCHES)]
        batch = loadgen.write_targets([Target(f"{URL}/accommodations/rank/batch", {"requests": c}) for c in chunks],
                                      RAW / "composition-accommodations-batch.targets")
        for concurrency in BATCH_CONCURRENCY:
            result = loadgen.closed_loop(batch, concurrency, seconds)
            results["batch"].append({**result.to_dict(), "searches_per_request": BATCH_SEARCHES,
                                     "searches_per_second": round(result.throughput * BATCH_SEARCHES, 1)})
            _log(f"accommodations batch ×{BATCH_SEARCHES}", result)
        # vegeta does not read bodies: a trip answered without properties (ranking past its deadline) would pass
        # for a fast one. Count them at the same concurrency.
        results["trips_without_properties"] = {
            concurrency: omitted_share(endpoints["trips"][0], trips, concurrency) for concurrency in CONCURRENCY}
        results["pairs"] = []
        for _ in range(PAIRS):
            pair = {name: loadgen.closed_loop(RAW / f"composition-{name}.targets", 16, seconds).to_dict()
                    for name in ("destinations", "trips")}
            pair["ratio"] = pair["trips"]["p99_ms"] / pair["destinations"]["p99_ms"]
            log.info("pair at 16 clients: destinations p99 %.1f ms, trips p99 %.1f ms: %.2fx",
                     pair["destinations"]["p99_ms"], pair["trips"]["p99_ms"], pair["ratio"])
            results["pairs"].append(pair)
        return results
    finally:
        servers.stop(process)


def omitted_share(url: str, bodies: list[dict], clients: int, per_client: int = 20) -> dict:
    """Of ``clients × per_client`` trip requests sent by ``clients`` concurrent clients: the share refused (not
    200) and, of the answered ones, the share with ``properties_omitted``."""
    def client(offset: int) -> list[bool | None]:
        with httpx.Client(timeout=10) as http:
            answers = [http.post(url, json=bodies[(offset + i) % len(bodies)]) for i in range(per_client)]
        return [a.json()["properties_omitted"] if a.status_code == 200 else None for a in answers]

    with ThreadPoolExecutor(clients) as pool:
        flags = [flag for answers in pool.map(client, range(0, clients * per_client, per_client)) for flag in answers]
    answered = [flag for flag in flags if flag is not None]
    return {"requests": len(flags), "refused": 1 - len(answered) / len(flags),
            "omitted": sum(answered) / len(answered) if answered else None}


def _log(name: str, r: LoadResult) -> None:
    log.info("%-32s %4.0f clients: %7.1f req/s  p50 %6.1f ms  p99 %6.1f ms  success %.3f", name, r.level,
             r.throughput, r.p50_ms, r.p99_ms, r.success)


def markdown(summary: dict) -> str:
    limit, single, cost = summary["limit"], summary["serving"]["single"], summary["trip_cost"]
    lines = [f"Serving both models and the trip answer, {summary['machine']['cpus']} CPUs, {summary['ran_at']}; "
             f"models destinations/{summary['models']['destinations']}, "
             f"accommodations/{summary['models']['accommodations']}", "",
             "| endpoint | clients | requests/s | of the in-process limit | p50 ms | p99 ms | success |",
             "|---|---|---|---|---|---|---|"]
    limits = {"accommodations": limit["ranking_best_searches_per_second"], "trips": limit["trips_per_second"],
              "destinations": summary["destinations_limit_rows_per_second"]}
    for name, points in single.items():
        for p in points:
            share = f"{p['throughput'] / limits[name]:.1%}" if limits[name] else "n/a"
            lines.append(f"| {name} | {p['level']:.0f} | {p['throughput']:,.1f} | {share} | {p['p50_ms']:.1f} | "
                         f"{p['p99_ms']:.1f} | {p['success']:.3f} |")
    for p in summary["serving"]["batch"]:
        lines.append(f"| accommodations batch ×{p['searches_per_request']} | {p['level']:.0f} | "
                     f"{p['throughput']:,.1f} ({p['searches_per_second']:,.0f} searches/s) | "
                     f"{p['searches_per_second'] / limits['accommodations']:.1%} | {p['p50_ms']:.1f} | "
                     f"{p['p99_ms']:.1f} | {p['success']:.3f} |")
    lines += ["", f"In-process limits: ranking {limit['ranking_best_searches_per_second']:,.0f} searches/s (best "
              f"batch), batch-1 p50 {limit['ranking_batch1_p50_ms']:.1f} ms; a trip's work back to back "
              f"{limit['trips_per_second']:,.0f} trips/s, p50 {limit['trip_p50_ms']:.1f} ms; destinations "
              f"{summary['destinations_limit_rows_per_second']:,.0f} rows/s (best batch).",
              "", f"Trip answer p99 at 16 clients against the destination call's, {len(cost['pairs'])} pairs run back "
              "to back (destinations, then trips): "
              + ", ".join(f"{p['trips']:.1f} / {p['destinations']:.1f} ms = {p['ratio']:.2f}×" for p in cost["pairs"])
              + f"; median **{cost['ratio']:.2f}×**.", "",
              "| trips, clients | requests checked | refused (not 200) | answered without properties |",
              "|---|---|---|---|"]
    for clients, share in summary["serving"]["trips_without_properties"].items():
        omitted = "n/a" if share["omitted"] is None else f"{share['omitted']:.1%}"
        lines.append(f"| {clients} | {share['requests']} | {share['refused']:.1%} | {omitted} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, points in summary["serving"]["single"].items():
        clients = [p["level"] for p in points]
        left.plot(clients, [p["p99_ms"] for p in points], marker="o", label=name)
        right.plot(clients, [p["throughput"] for p in points], marker="o", label=name)
    for axis, label in ((left, "p99 latency (ms)"), (right, "requests / s")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("closed-loop clients")
        axis.set_ylabel(label)
        axis.legend()
    figure.suptitle(f"Both models and the trip answer on one Serve ({summary['machine']['cpus']} CPUs)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each load point")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    RAW.mkdir(parents=True, exist_ok=True)

    store, cache = ModelStore(str(STORE)), ROOT / ".data" / "bench" / "model-cache"
    destination = store.fetch("destinations", "latest", cache)
    ranking = store.fetch("accommodations", "latest", cache)
    vocabulary = Vocabulary.model_validate_json((destination.path / VOCABULARY_FILE).read_text())
    catalogue = Catalogue.read(ranking.path / CATALOGUE_FILE)
    destinations = request_bodies(vocabulary)
    searches = ranking_bodies(catalogue, destinations)
    predictor = Predictor(destination.path / SAVED_MODEL_DIR)
    limit = in_process_limits(predictor, Ranker(ranking.path / SAVED_MODEL_DIR), catalogue, destinations, searches)
    picked = destinations[:1024]
    rows, _ = _timed(lambda: predictor.predict(pad_trips([b["cities"] for b in picked], width=8),
                                               [b["booker_country"] for b in picked],
                                               [b["device_class"] for b in picked],
                                               np.array([b["affiliate_id"] for b in picked]), 4))
    serving = measure(destinations, searches, args.seconds)
    pairs = [{"destinations": p["destinations"]["p99_ms"], "trips": p["trips"]["p99_ms"], "ratio": p["ratio"]}
             for p in serving["pairs"]]
    summary = {
        "benchmark": "composition",
        "ran_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "models": {"destinations": destination.manifest.version, "accommodations": ranking.manifest.version},
        "load": {"seconds_per_point": args.seconds, "concurrency": CONCURRENCY, "generator": loadgen.VEGETA},
        "limit": limit,
        "destinations_limit_rows_per_second": rows * len(picked),
        "serving": serving,
        "trip_cost": {"pairs": pairs, "ratio": statistics.median(p["ratio"] for p in pairs)},
    }
    (RESULTS / "composition.json").write_text(json.dumps(summary, indent=2, default=str))
    (RESULTS / "composition.md").write_text(markdown(summary))
    plot(summary, RESULTS / "composition.png")
    print(markdown(summary))


if __name__ == "__main__":
    main()
