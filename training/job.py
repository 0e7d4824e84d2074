"""The training job every model shares: check, prepare, train with Ray Train, export, score, publish.

    python -m training.destinations --config configs/train/destinations.yaml
    ray job submit --working-dir . -- python -m training.accommodations --config configs/train/accommodations.yaml

Steps: check the config, the data and the store (seconds, before anything expensive); build examples with Ray
Data; fit the model's vocabularies and baselines; train with ``TensorflowTrainer`` (checkpoints in Ray Train's
storage, best by the model's validation metric); export the best checkpoint as a SavedModel; score it *through
its serving signature* on held-out data next to the baselines; publish atomically. The last line printed is one
JSON object: the version and its metrics. Bad input exits with status 2 and one ``error:`` line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import numpy as np
import ray
import tensorflow as tf
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.tensorflow import TensorflowTrainer

from recsys import filesystem
from recsys.artifact_store import ModelStore
from recsys.errors import RecsysError
from recsys.manifest import SAVED_MODEL_DIR, Manifest
from recsys.provenance import git_commit
from recsys.ray_runtime import start_driver
from training.config import JobConfig, load_config
from recsys.tables import DataFiles, find_parquet_files
from training.data import TrainingData
from training.task import Task
from training.train_loop import WEIGHTS_FILE, LoopConfig, run_worker, validation_metric

log = logging.getLogger("training.job")

_WORKER_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def main(task: Task, argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m training.{task.name}",
                                     description=f"Train the {task.name} model and publish it to the model store.")
    parser.add_argument("--config", required=True, type=Path, help="training config YAML")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start a local Ray)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        config = load_config(args.config, environ, task.config_type)
        files = find_parquet_files(config.data_uri, task.check_schema)
        store = ModelStore(config.store_uri)
        store.check_writable()
        start_ray(config, args.address or environ.get("RAY_ADDRESS"))
        try:
            manifest = train_and_publish(task, config, files, store, git_commit(environ))
        finally:
            ray.shutdown()
    except RecsysError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {"model": manifest.name, "version": manifest.version, "store": store.uri,
               "metrics": manifest.metrics.model_dump(), "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary))
    return 0


def train_and_publish(task: Task, config: JobConfig, files: DataFiles, store: ModelStore,
                      git_commit: str | None) -> Manifest:
    version = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:4]
    log.info("training %s version %s from %s (%d rows)", config.model_name, version, files.uri, files.rows)
    data = task.prepare(files, config)
    state = task.fit_state(data, config)
    baselines = task.baselines(data, config)
    log.info("examples %s; vocabulary %s; baselines %s", data.counts, task.vocabulary_sizes(state), baselines)

    trained_at = time.perf_counter()
    result = make_trainer(task, config, data, state, run_name=f"{config.model_name}-{version}").fit()
    train_seconds = time.perf_counter() - trained_at
    metric = validation_metric(task)
    best = result.get_best_checkpoint(metric, "max")
    best_metrics = next(m for c, m in result.best_checkpoints if c.path == best.path)
    log.info("best checkpoint: epoch %d, %s %.4f", best_metrics["epoch"], metric, best_metrics[metric])

    with tempfile.TemporaryDirectory(prefix="export-") as workdir:
        network = task.build_network(config, state)
        with best.as_directory() as checkpoint_dir:
            network.load_weights(str(Path(checkpoint_dir) / WEIGHTS_FILE))
        task.export(network, config, state, data, Path(workdir))
        metrics = task.evaluate(Path(workdir) / SAVED_MODEL_DIR, data, config, baselines, best_metrics[metric])
        log.info("held-out metrics: %s", metrics.model_dump())
        manifest = Manifest(
            name=config.model_name,
            version=version,
            created_at=dt.datetime.now(dt.UTC),
            git_commit=git_commit,
            frameworks=_frameworks(),
            signature=task.signature(),
            vocabulary_sizes=task.vocabulary_sizes(state),
            model=config.model.model_dump(),
            training={
                "data_uri": files.uri,
                "hyperparameters": config.hyperparameters.model_dump(),
                "num_workers": config.num_workers,
                "use_gpu": config.use_gpu,
                "seed": config.seed,
                "best_epoch": best_metrics["epoch"],
                "examples": data.counts,
                "examples_per_second": best_metrics["examples_per_second"],
                "train_seconds": round(train_seconds, 1),
            },
            metrics=metrics,
            files={},
        )
        return store.publish(Path(workdir), manifest)


def make_trainer(task: Task, config: JobConfig, data: TrainingData, state, run_name: str,
                 keep_checkpoints: int | None = 2) -> TensorflowTrainer:
    """The Ray Train trainer: workers, checkpoint storage (the best ``keep_checkpoints`` by the task's validation
    metric, or all), failure handling, datasets."""
    fs, storage_path = filesystem.resolve(config.checkpoint_uri)
    resources = {"CPU": config.cpus_per_worker, **({"GPU": 1} if config.use_gpu else {})}
    loop = LoopConfig(job=config.model_dump(), state=state.model_dump(),
                      per_worker_batch_size=config.per_worker_batch_size, train_examples=task.train_examples(data),
                      threads=max(1, int(config.cpus_per_worker)))
    return TensorflowTrainer(
        train_loop_per_worker=functools.partial(run_worker, task),
        train_loop_config=loop.model_dump(),
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=filesystem.to_pyarrow(fs),
            checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints,
                                               checkpoint_score_attribute=validation_metric(task),
                                               checkpoint_score_order="max"),
            failure_config=FailureConfig(max_failures=config.max_failures),
            worker_runtime_env={"env_vars": _WORKER_ENV},
        ),
        datasets={"train": data.train, "validation": data.validation},
    )


def start_ray(config: JobConfig, address: str | None) -> None:
    """Join ``address`` if given, else start a private local Ray with enough logical CPUs for every worker plus the
    data tasks that run beside them."""
    start_driver(address, config.num_workers * config.cpus_per_worker + 1, _WORKER_ENV)


def _frameworks() -> dict[str, str]:
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "tf_keras": metadata.version("tf-keras"), "ray": ray.__version__, "numpy": np.__version__}
