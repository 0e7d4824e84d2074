"""Train the next-destination model with Ray Train and publish it to the model store.

    python -m training.destinations --config configs/train/destinations.yaml
    ray job submit --working-dir . -- python -m training.destinations --config configs/train/destinations.yaml

Steps: check the config, the data and the store (seconds, before anything expensive); build examples with Ray
Data; fit the popularity and Markov baselines; train with ``TensorflowTrainer`` (checkpoints in Ray Train's
storage, best by validation accuracy@4); export the best checkpoint as a SavedModel; score it *through its
serving signature* on held-out trips next to the baselines; publish atomically. The last line printed is one
JSON object: the version and its metrics. Bad input exits with status 2 and one ``error:`` line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import numpy as np
import ray
import ray.data
import tensorflow as tf
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.tensorflow import TensorflowTrainer

from recsys import filesystem, signature
from recsys.artifact_store import ModelStore
from recsys.baselines import Markov, Popularity, accuracy_at_k
from recsys.errors import RecsysError
from recsys.features import LABEL, Vocabulary
from recsys.manifest import SAVED_MODEL_DIR, Manifest, Metrics
from recsys.predictor import Predictor
from training.config import TrainConfig, load_config
from training.data import TrainingData, TripFiles, find_trip_files, load_training_data
from training.export import export_checkpoint
from training.train_loop import METRIC, LoopConfig, train_loop_per_worker

log = logging.getLogger("training.destinations")

K = 4
_WORKER_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.destinations", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="training config YAML")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start a local Ray)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        config = load_config(args.config, environ)
        files = find_trip_files(config.data_uri)
        store = ModelStore(config.store_uri)
        store.check_writable()
        start_ray(config, args.address or environ.get("RAY_ADDRESS"))
        try:
            manifest = train_and_publish(config, files, store, _git_commit(environ))
        finally:
            ray.shutdown()
    except RecsysError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {"model": manifest.name, "version": manifest.version, "store": store.uri,
               "metrics": manifest.metrics.model_dump(), "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary))
    return 0


def train_and_publish(config: TrainConfig, files: TripFiles, store: ModelStore, git_commit: str | None) -> Manifest:
    version = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:4]
    log.info("training %s version %s from %s (%d reservations)", config.model_name, version, files.uri,
             files.reservations)
    data = load_training_data(files, config.model.history_length)
    vocabulary = Vocabulary.fit(data.train_columns, config.hyperparameters.min_city_count)
    baselines = _baselines(data)
    log.info("examples %s; vocabulary %s; baselines accuracy@%d %s", data.counts, vocabulary.sizes(), K, baselines)

    trained_at = time.perf_counter()
    result = make_trainer(config, data, loop_config(config, data, vocabulary),
                          run_name=f"{config.model_name}-{version}").fit()
    train_seconds = time.perf_counter() - trained_at
    best = result.get_best_checkpoint(METRIC, "max")
    best_metrics = next(m for c, m in result.best_checkpoints if c.path == best.path)
    log.info("best checkpoint: epoch %d, %s %.4f", best_metrics["epoch"], METRIC, best_metrics[METRIC])

    with tempfile.TemporaryDirectory(prefix="export-") as workdir:
        with best.as_directory() as checkpoint_dir:
            export_checkpoint(Path(checkpoint_dir), Path(workdir))
        predictor = Predictor(Path(workdir) / SAVED_MODEL_DIR)
        test = data.test
        top = predictor.predict_in_batches(test["history"], test["booker_country"], test["device_class"],
                                           test["affiliate_id"], K)
        accuracy = accuracy_at_k(top, test[LABEL])
        log.info("held-out accuracy@%d: model %.4f, markov %.4f, popularity %.4f", K, accuracy,
                 baselines["markov"], baselines["popularity"])
        manifest = Manifest(
            name=config.model_name,
            version=version,
            created_at=dt.datetime.now(dt.UTC),
            git_commit=git_commit,
            frameworks=_frameworks(),
            signature=signature.describe(),
            vocabulary_sizes=vocabulary.sizes(),
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
            metrics=Metrics(accuracy_at_4=accuracy, baselines=baselines, test_trips=len(test[LABEL]),
                            validation_accuracy_at_4=best_metrics[METRIC]),
            files={},
        )
        return store.publish(Path(workdir), manifest)


def _baselines(data: TrainingData) -> dict[str, float]:
    train, test = data.train_columns, data.test
    markov = Markov(train["history"][:, -1], train[LABEL], K)
    popularity = Popularity(train[LABEL], K)
    return {
        "markov": accuracy_at_k(markov.recommend(test["history"][:, -1]), test[LABEL]),
        "popularity": accuracy_at_k(popularity.recommend(len(test[LABEL])), test[LABEL]),
    }


def loop_config(config: TrainConfig, data: TrainingData, vocabulary: Vocabulary) -> LoopConfig:
    """What every worker gets: architecture, hyper-parameters, vocabulary, batch and thread counts."""
    return LoopConfig(model=config.model, hyperparameters=config.hyperparameters, vocabulary=vocabulary,
                      per_worker_batch_size=config.per_worker_batch_size,
                      train_examples=len(data.train_columns[LABEL]),
                      threads=max(1, int(config.cpus_per_worker)), seed=config.seed)


def make_trainer(config: TrainConfig, data: TrainingData, loop: LoopConfig, run_name: str,
                 keep_checkpoints: int | None = 2) -> TensorflowTrainer:
    """The Ray Train trainer for ``config``: workers, checkpoint storage (the best ``keep_checkpoints`` by
    validation accuracy, or all), failure handling, datasets."""
    fs, storage_path = filesystem.resolve(config.checkpoint_uri)
    resources = {"CPU": config.cpus_per_worker, **({"GPU": 1} if config.use_gpu else {})}
    return TensorflowTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config=loop.model_dump(),
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=filesystem.to_pyarrow(fs),
            checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints, checkpoint_score_attribute=METRIC,
                                               checkpoint_score_order="max"),
            failure_config=FailureConfig(max_failures=config.max_failures),
            worker_runtime_env={"env_vars": _WORKER_ENV},
        ),
        datasets={"train": data.train, "validation": data.validation},
    )


def start_ray(config: TrainConfig, address: str | None) -> None:
    """Join ``address`` if given, else start a private local Ray sized for ``config``."""
    if address:
        ray.init(address=address, runtime_env={"env_vars": _WORKER_ENV})
        return
    # A private local instance ("local" never attaches to someone else's Ray on this machine), with enough
    # logical CPUs for every worker plus the data tasks that run beside them.
    needed = config.num_workers * config.cpus_per_worker + 1
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, int(np.ceil(needed))),
             runtime_env={"env_vars": _WORKER_ENV})


def _git_commit(environ: Mapping[str, str]) -> str | None:
    """The commit the code came from: ``GIT_COMMIT`` (set by the RayJob, whose working_dir has no .git), else
    the checkout's HEAD."""
    if environ.get("GIT_COMMIT"):
        return environ["GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _frameworks() -> dict[str, str]:
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "tf_keras": metadata.version("tf-keras"), "ray": ray.__version__, "numpy": np.__version__}


if __name__ == "__main__":
    sys.exit(main())
