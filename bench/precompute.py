"""Precompute throughput: the Ray Data job end to end and its scoring stage, against the in-process limit of the same
SavedModel at the same batch size, with 1 and 2 scoring actors.

    python -m bench.precompute        (make bench-precompute; about 4 minutes on 2 cores)

1. In-process, one TensorFlow thread (what one actor-core has): the model alone on batches of the config's size
   (the limit), and each step of the scoring actor on the same batches: Arrow lists to the model's matrix, the
   unknown-id flags, the model call, the answers back to Arrow.
2. Ray Data stage by stage, each materialised so it is timed alone: read the reservations, open trips (shuffle by
   user, latest trip of each), scoring on an actor pool of 1 and 2 actors (their model load included), write.
3. The job's CLI end to end (process start to published run, Ray start-up included) with 1 and 2 actors.

Input: the larger synthetic trips (.data/trips/full, 200k trips of 160k users; generated if missing). Results go
to bench/results/precompute.{json,md,png}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from batch.config import load_config
from batch.open_trips import COLUMNS, latest_trips
from batch.scorers import DestinationScorer
from recsys.artifact_store import ModelStore
from recsys.columns import list_column, string_values, trip_matrix
from recsys.destinations.runtime import DestinationRuntime
from recsys.loaded_model import LoadOptions, batch_shapes, load

log = logging.getLogger("bench.precompute")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
STORE = ROOT / ".data" / "models"
FULL_TRIPS = ROOT / ".data" / "trips" / "full"
CONFIG = ROOT / "configs" / "batch" / "destinations.yaml"
ACTORS = (1, 2)
SCORING_REPEATS = 4  # the scoring stage scores the open trips this many times, so the actors' start is amortised


class TimedScorer(DestinationScorer):
    """The job's scorer, also reporting per batch the seconds it spent and the process that spent them."""

    def __call__(self, trips: pa.Table) -> pa.Table:
        started = time.perf_counter()
        scored = super().__call__(trips)
        busy = np.zeros(scored.num_rows)
        busy[:1] = time.perf_counter() - started
        return scored.append_column("busy_s", pa.array(busy)).append_column(
            "pid", pa.repeat(os.getpid(), scored.num_rows).cast(pa.int64()))


def ensure_input() -> None:
    if not FULL_TRIPS.exists():
        subprocess.run([sys.executable, "-m", "recsys.synthetic_trips", "--out", str(FULL_TRIPS), "--trips",
                        "200000", "--seed", "7"], check=True, cwd=ROOT)


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else float("nan")


def in_process(batch_size: int, k: int, open_trips: pa.Table) -> dict:
    """One thread: the model alone, and the actor's steps, over every full batch of the open trips."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = load(str(STORE / "destinations"), "latest", DestinationRuntime.open,
                 LoadOptions(cache_dir=ROOT / ".data" / "bench" / "model-cache"), batch_shapes(batch_size))
    runtime, shapes = model.runtime, batch_shapes(batch_size)
    batches = [open_trips.slice(start, batch_size) for start in range(0, open_trips.num_rows - batch_size + 1,
                                                                       batch_size)]
    seconds = dict.fromkeys(("prepare", "unknown_ids", "model", "answers"), 0.0)
    for batch in batches:
        started = time.perf_counter()
        history = trip_matrix(batch["trip_cities"], runtime.history_length)
        countries, devices = string_values(batch["booker_country"]), string_values(batch["device_class"])
        affiliates = batch["affiliate_id"].to_numpy()
        prepared_at = time.perf_counter()
        runtime.unknown(history, countries, devices, affiliates)
        flagged_at = time.perf_counter()
        ids, scores = runtime.top_k(history, countries, devices, affiliates, k, shapes)
        scored_at = time.perf_counter()
        pa.table({"next_cities": list_column(ids, pa.int64()), "scores": list_column(scores, pa.float32())})
        answered_at = time.perf_counter()
        seconds["prepare"] += prepared_at - started
        seconds["unknown_ids"] += flagged_at - prepared_at
        seconds["model"] += scored_at - flagged_at
        seconds["answers"] += answered_at - scored_at
    rows = len(batches) * batch_size
    return {"rows": rows, "batch_size": batch_size, "limit_rows_per_second": _rate(rows, seconds["model"]),
            "load_seconds": model.load_seconds, "warmed_shapes": len(shapes),
            "actor_steps_rows_per_second": _rate(rows, sum(seconds.values())),
            "share_of_actor_time": {step: s / sum(seconds.values()) for step, s in seconds.items()},
            "model_version": model.version}


def stages(config_path: Path, actors: int, workdir: Path) -> dict:
    """The job's pipeline in this process, one materialised stage at a time, on a private local Ray."""
    import ray
    import ray.data

    from batch.open_trips import open_trips, read_reservations
    from batch.output import PartFiles
    from batch.precompute import resolve_versions
    from recsys.tables import find_parquet_files
    from recsys.trips import check_trip_schema

    config = load_config(config_path, {})
    files = find_parquet_files(config.input_uri, check_trip_schema)
    versions = resolve_versions(config)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             _temp_dir=str(workdir / "ray"), runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}})
    try:
        timings = {}
        started = time.perf_counter()
        reservations = read_reservations(files.paths, files.uri).materialize()
        timings["read"] = time.perf_counter() - started
        started = time.perf_counter()
        trips = open_trips(reservations, partitions=max(actors, 2)).materialize()
        timings["open_trips"] = time.perf_counter() - started
        rows = trips.count()
        repeated = trips.union(*[trips] * (SCORING_REPEATS - 1)).repartition(
            max(actors, 2) * SCORING_REPEATS).materialize()
        started = time.perf_counter()
        scored = repeated.map_batches(TimedScorer, fn_constructor_kwargs={"config": config, "versions": versions},
                                      batch_size=config.scoring.batch_size, batch_format="pyarrow",
                                      concurrency=actors, num_cpus=config.scoring.num_cpus).materialize()
        timings["scoring"] = (time.perf_counter() - started) / SCORING_REPEATS  # per pass over the open trips
        busy = scored.select_columns(["busy_s", "pid"]).to_pandas()
        started = time.perf_counter()
        scored.drop_columns(["busy_s", "pid"]).limit(rows).write_parquet(
            str(workdir / f"out-{actors}"), filename_provider=PartFiles(), mode=ray.data.SaveMode.OVERWRITE)
        timings["write"] = time.perf_counter() - started
    finally:
        ray.shutdown()
    return {"actors": actors, "rows": rows, "reservations": files.rows, "seconds": timings,
            "rows_per_second": {stage: _rate(rows, s) for stage, s in timings.items()},
            "scoring_busy_seconds": float(busy["busy_s"].sum()) / SCORING_REPEATS,
            "actor_busy_rows_per_second": _rate(rows * SCORING_REPEATS, float(busy["busy_s"].sum())),
            "actors_that_scored": int(busy["pid"].nunique())}


def end_to_end(config_path: Path, actors: int, workdir: Path) -> dict:
    settings = yaml.safe_load(config_path.read_text())
    settings["scoring"]["concurrency"] = actors
    config = workdir / f"e2e-{actors}.yaml"
    config.write_text(yaml.safe_dump(settings))
    result = subprocess.run([sys.executable, "-m", "batch.precompute", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "RAY_TMPDIR": str(workdir / "ray")})
    if result.returncode != 0:
        raise RuntimeError(f"precompute with {actors} actors failed: {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown(summary: dict) -> str:
    limit = summary["in_process"]
    per_core = limit["limit_rows_per_second"]
    lines = [
        f"# Precompute throughput ({summary['ran_at']}, {summary['machine']['cpus']} CPUs)",
        "",
        f"Input: {summary['input']['reservations']:,} reservations, {summary['input']['users']:,} users; model "
        f"{limit['model_version']}, batches of {limit['batch_size']}, k {summary['k']}.",
        "",
        f"In-process limit (one TensorFlow thread, the model alone): **{per_core:,.0f} rows/s**; the actor's "
        f"own steps on the same batches: {limit['actor_steps_rows_per_second']:,.0f} rows/s "
        f"({', '.join(f'{step} {share:.0%}' for step, share in limit['share_of_actor_time'].items())}).",
        "",
        f"An actor's start (fetch from the cache, sha256 check, load, warm-up of {limit['warmed_shapes']} batch "
        f"shapes): {limit['load_seconds']:.1f} s in-process.",
        "",
        "| actors | read reservations/s | open trips rows/s | scoring rows/s | per actor-core, busy: rows/s "
        "(÷ limit) | scoring ÷ (actors × limit) | write rows/s | end to end rows/s (÷ actors × limit) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage, e2e in zip(summary["stages"], summary["end_to_end"]):
        rates, actors = stage["rows_per_second"], stage["actors"]
        busy = stage["actor_busy_rows_per_second"]
        lines.append(f"| {actors} | {_rate(stage['reservations'], stage['seconds']['read']):,.0f} "
                     f"| {rates['open_trips']:,.0f} | {rates['scoring']:,.0f} | {busy:,.0f} ({busy / per_core:.2f}) "
                     f"| {rates['scoring'] / (actors * per_core):.2f} | {rates['write']:,.0f} "
                     f"| {e2e['rows_per_second']:,.0f} ({e2e['rows_per_second'] / (actors * per_core):.2f}) |")
    lines += ["", f"Scoring scores the open trips {summary['scoring_repeats']} times in one stage (figures per pass), "
                  "the actors' start included; *busy* counts only the time the actors spent in their batches. End "
                  "to end is the job's CLI: process and Ray start-up, read, open trips, scoring, write, counting "
                  "and checksums, publish."]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_core = summary["in_process"]["limit_rows_per_second"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = ["open trips", "scoring", "scoring, busy\n(× actors)", "write", "end to end"]
    width = 0.35
    for i, (stage, e2e) in enumerate(zip(summary["stages"], summary["end_to_end"])):
        rates = stage["rows_per_second"]
        values = [rates["open_trips"], rates["scoring"], stage["actor_busy_rows_per_second"] * stage["actors"],
                  rates["write"], e2e["rows_per_second"]]
        ax.bar(np.arange(len(names)) + (i - 0.5) * width, values, width, label=f"{stage['actors']} actor(s)")
        ax.axhline(stage["actors"] * per_core, linestyle="--", linewidth=1, color=f"C{i}",
                   label=f"in-process limit × {stage['actors']}")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_yscale("log")  # writing is an order of magnitude faster than the rest
    ax.set_ylabel("trips per second (log scale)")
    ax.set_title("Precompute: Ray Data stages against the in-process limit")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ensure_input()
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-precompute-", dir="/tmp"))
    store = ROOT / ".data" / "bench" / "precompute-store"
    try:
        # The job publishes into its store: a copy of the local models' store, so bench runs leave no predictions in
        # the everyday one.
        shutil.rmtree(store, ignore_errors=True)
        destination = ModelStore(str(STORE)).fetch("destinations", "latest", workdir / "fetch")
        ModelStore(str(store)).publish(destination.path, destination.manifest)
        settings = yaml.safe_load(CONFIG.read_text())
        settings.update(input_uri=str(FULL_TRIPS), store_uri=str(store))
        config_path = workdir / "destinations.yaml"
        config_path.write_text(yaml.safe_dump(settings))
        config = load_config(config_path, {})
        open_trips = latest_trips(pq.read_table(FULL_TRIPS, columns=COLUMNS))
        log.info("input: %d users", open_trips.num_rows)
        limit = in_process(config.scoring.batch_size, config.k, open_trips)
        log.info("in-process limit %.0f rows/s", limit["limit_rows_per_second"])
        staged = []
        for actors in ACTORS:
            staged.append(stages(config_path, actors, workdir))
            log.info("stages with %d actor(s): %s", actors, staged[-1]["rows_per_second"])
        e2e = []
        for actors in ACTORS:
            e2e.append(end_to_end(config_path, actors, workdir))
            log.info("end to end with %d actor(s): %.0f rows/s", actors, e2e[-1]["rows_per_second"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
    summary = {
        "benchmark": "precompute",
        "ran_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "input": {"uri": str(FULL_TRIPS), "reservations": staged[0]["reservations"], "users": open_trips.num_rows},
        "k": config.k,
        "scoring_repeats": SCORING_REPEATS,
        "in_process": limit,
        "stages": staged,
        "end_to_end": e2e,
    }
    (RESULTS / "precompute.json").write_text(json.dumps(summary, indent=2, default=str))
    (RESULTS / "precompute.md").write_text(markdown(summary))
    plot(summary, RESULTS / "precompute.png")
    print(markdown(summary))


if __name__ == "__main__":
    main()
