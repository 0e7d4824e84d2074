"""Precompute predictions for every open trip with Ray Data, and publish them to the model store.

    python -m batch.precompute --config configs/batch/destinations.yaml
    ray job submit --working-dir . -- python -m batch.precompute --config configs/batch/trips.yaml

Steps: check the config, the input files' schema, the model versions (``latest`` resolved once, here) and that the
store is writable (seconds, before anything expensive); then one Ray Data pipeline: read the reservations, take
each user's latest trip (:mod:`batch.open_trips`), score batches on an actor pool (:mod:`batch.scorers`), write
Parquet into a hidden staging directory of the run; count what was written, checksum it and publish the run
atomically (:class:`recsys.artifact_store.PredictionStore`). A failed or interrupted run publishes nothing and
leaves the previous run as ``LATEST``. Ray Data reports progress (rows, rows/s) on the console; the last line
printed is one JSON object. Bad input exits with status 2 and one ``error:`` line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import ray
import ray.data
from ray.data import SaveMode

from batch.config import PrecomputeConfig, load_config
from batch.open_trips import open_trips, read_reservations
from batch.output import PartFiles, count_written, unknown_flags
from batch.scorers import scorer_of
from recsys import filesystem
from recsys.artifact_store import ModelStore, PredictionStore
from recsys.errors import DataError, RecsysError
from recsys.manifest import PredictionInput, PredictionManifest
from recsys.provenance import git_commit
from recsys.ray_runtime import start_driver
from recsys.tables import DataFiles, find_parquet_files
from recsys.trips import check_trip_schema

log = logging.getLogger("batch.precompute")

_WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
# Reservations per partition after the shuffle by user: ~30 MB, well under Ray Data's target block size, so that a
# partition stays one block and every user's reservations meet in one call of latest_trips.
_ROWS_PER_PARTITION = 500_000


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch.precompute", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="precompute config YAML (configs/batch/)")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start a local Ray)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    interrupted = _note_interrupts()
    try:
        config = load_config(args.config, environ)
        files = find_parquet_files(config.input_uri, check_trip_schema)
        versions = resolve_versions(config)
        predictions = PredictionStore(config.store_uri)
        predictions.check_writable()
        start_ray(config, args.address or environ.get("RAY_ADDRESS"))
        try:
            manifest = precompute(config, files, versions, predictions, git_commit(environ), started, interrupted)
        finally:
            ray.shutdown()
    except RecsysError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    print(json.dumps({"predictions": manifest.name, "run": manifest.run, "rows": manifest.rows,
                      "seconds": round(seconds, 1), "rows_per_second": round(manifest.rows / seconds, 1),
                      "models": manifest.models, "unknown": manifest.unknown,
                      "output": f"{predictions.uri}/{manifest.name}/{manifest.run}"}))
    return 0


def resolve_versions(config: PrecomputeConfig) -> dict[str, str]:
    """Each model's concrete version (``latest`` read once, now), after checking its manifest is there."""
    store = ModelStore(config.store_uri)
    versions = {}
    for name, version in config.models.items():
        versions[name] = store.resolve(name, version)
        store.manifest(name, versions[name])
    return versions


def _note_interrupts() -> threading.Event:
    """Ctrl-C raises KeyboardInterrupt as usual, and is also noted, so that an interrupted run cannot publish even
    if the KeyboardInterrupt gets lost on its way (seen once in a loaded test run: the job went on and published)."""
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.set()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    return interrupted


def precompute(config: PrecomputeConfig, files: DataFiles, versions: dict[str, str], predictions: PredictionStore,
               commit: str | None, started: float, interrupted: threading.Event | None = None) -> PredictionManifest:
    run = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:4]
    log.info("precomputing %s run %s from %s (%d files, %d rows) with %s", config.predictions, run, files.uri,
             len(files.paths), files.rows, versions)
    with predictions.staging(config.predictions, run) as staging:
        fs, path = filesystem.resolve(staging)
        scored(config, files, versions).write_parquet(path, filesystem=filesystem.to_pyarrow(fs),
                                                      filename_provider=PartFiles(),
                                                      max_rows_per_file=config.rows_per_file,
                                                      # The staging directory is the run's own: nothing to keep.
                                                      mode=SaveMode.OVERWRITE)
        written = count_written(staging, unknown_flags(config.predictions))
        if written.rows == 0:
            raise DataError(f"{files.uri}: no trips to score (no reservation with a user, a trip and a city)")
        if interrupted is not None and interrupted.is_set():
            raise KeyboardInterrupt("interrupted while scoring: nothing published")
        parameters = {"k": config.k, "scoring": config.scoring.model_dump()}
        if config.predictions == "trips":
            parameters["trip_answer"] = config.trip_answer.model_dump()
        return predictions.publish(staging, PredictionManifest(
            name=config.predictions, run=run, created_at=dt.datetime.now(dt.UTC), git_commit=commit,
            models=versions, input=PredictionInput(uri=files.uri, files=len(files.paths), rows=files.rows),
            rows=written.rows, parameters=parameters, unknown=written.unknown,
            seconds=round(time.perf_counter() - started, 3), files={}))


def scored(config: PrecomputeConfig, files: DataFiles, versions: dict[str, str]) -> ray.data.Dataset:
    """The pipeline up to the write: open trips, scored on the actor pool."""
    pool = config.scoring
    trips = open_trips(read_reservations(files.paths, files.uri),
                       partitions=max(pool.concurrency, math.ceil(files.rows / _ROWS_PER_PARTITION)))
    return trips.map_batches(scorer_of(config), fn_constructor_kwargs={"config": config, "versions": versions},
                             batch_size=pool.batch_size, batch_format="pyarrow", concurrency=pool.concurrency,
                             num_cpus=pool.num_cpus, num_gpus=pool.num_gpus or None)


def start_ray(config: PrecomputeConfig, address: str | None) -> None:
    """Join ``address`` if given, else start a private local Ray with room for the actor pool and the tasks that
    read and write beside it."""
    start_driver(address, config.scoring.concurrency * config.scoring.num_cpus + 1, _WORKER_ENV)


if __name__ == "__main__":
    sys.exit(main())
