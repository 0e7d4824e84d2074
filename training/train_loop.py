"""What each Ray Train worker runs, for any model: MultiWorkerMirroredStrategy over its shard of the examples.

Ray Train sets ``TF_CONFIG`` on every worker; the shards come from Ray Data (split evenly, so every worker runs
the same number of steps, which the strategy's all-reduce needs). Each worker reads its shard into memory once
and feeds it through the model's ``tf.data`` pipeline (:meth:`training.task.Task.dataset`, reshuffled every
epoch). Streaming the shard through Ray's ``to_tf`` generator instead measured 3-4x slower under the strategy on
2 cores; a Booking-sized data set (1M reservations) takes ~70 MB per worker this way. Each epoch ends with a
validation pass and a checkpoint holding the weights and the epoch, so a restarted worker group resumes where it
stopped.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import ray.train
import tensorflow as tf
import tf_keras as keras
from pydantic import BaseModel, ConfigDict

from training.task import Task

WEIGHTS_FILE = "weights.h5"
STATE_FILE = "training_state.json"


class LoopConfig(BaseModel):
    """What the driver hands every worker (passed through Ray as a plain dict)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: dict  # the task's JobConfig
    state: dict  # the task's state (vocabularies)
    per_worker_batch_size: int
    train_examples: int
    threads: int


def validation_metric(task: Task) -> str:
    return f"val_{task.metric}"


def run_worker(task: Task, raw_config: dict) -> None:
    """The per-worker function (``functools.partial(run_worker, task)``)."""
    loop = LoopConfig.model_validate(raw_config)
    config, state = task.config_type.model_validate(loop.job), task.state_type.model_validate(loop.state)
    tf.config.threading.set_intra_op_parallelism_threads(loop.threads)
    tf.config.threading.set_inter_op_parallelism_threads(loop.threads)
    keras.utils.set_random_seed(config.seed)
    context = ray.train.get_context()
    chief = context.get_world_rank() == 0

    strategy = _strategy()
    with strategy.scope():
        network = task.build_network(config, state)
        task.compile(network, config)
    first_epoch = _restore(network)
    batch = loop.per_worker_batch_size
    train_rows = _in_memory(ray.train.get_dataset_shard("train"))
    validation_rows = _in_memory(ray.train.get_dataset_shard("validation"))
    # Datasets from a function reach each worker's replica as they are: no re-sharding and no re-batching
    # (a plain dataset would be re-batched across replicas, silently dropping half of every worker's rows).
    train_set = strategy.distribute_datasets_from_function(
        lambda _: task.dataset(train_rows, config, state, batch, for_training=True))
    validation_set = strategy.distribute_datasets_from_function(
        lambda _: task.dataset(validation_rows, config, state, batch, for_training=False))
    # Shards are equal in size, so every worker runs the same number of steps.
    train_steps, validation_steps = (max(1, -(-_length(rows) // batch)) for rows in (train_rows, validation_rows))
    epochs, metric = config.hyperparameters.epochs, task.metric

    for epoch in range(first_epoch, epochs):
        started = time.perf_counter()
        fit = network.fit(train_set, epochs=1, steps_per_epoch=train_steps, verbose=0).history
        train_seconds = time.perf_counter() - started
        validation = network.evaluate(validation_set, steps=validation_steps, return_dict=True, verbose=0)
        metrics = {
            "epoch": epoch + 1,
            "loss": float(fit["loss"][-1]),
            metric: float(fit[metric][-1]),
            "val_loss": float(validation["loss"]),
            validation_metric(task): float(validation[metric]),
            "examples_per_second": loop.train_examples / train_seconds,
        }
        with tempfile.TemporaryDirectory() as directory:
            # Every worker saves (weight reads may be collective under the strategy); only the chief's is kept.
            network.save_weights(str(Path(directory) / WEIGHTS_FILE))
            (Path(directory) / STATE_FILE).write_text(json.dumps({"epoch": epoch + 1}))
            checkpoint = ray.train.Checkpoint.from_directory(directory) if chief else None
            ray.train.report(metrics, checkpoint=checkpoint)
        if chief:
            print(f"epoch {epoch + 1}/{epochs}: loss {metrics['loss']:.4f}, {metric} {metrics[metric]:.4f}, "
                  f"val {metric} {metrics[validation_metric(task)]:.4f}, "
                  f"{metrics['examples_per_second']:,.0f} examples/s", flush=True)


def _strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    # TF's Python-level peer health check blocks training steps for up to its 10 s timeout every 30 s on a
    # busy CPU (measured: one-worker epochs of 9.5 s became 20-41 s). Ray Train already watches worker health
    # and restarts the group (FailureConfig), so the check only costs time here. TF has no public switch.
    from tensorflow.python.distribute import collective_all_reduce_strategy

    extended = collective_all_reduce_strategy.CollectiveAllReduceExtended
    if hasattr(extended, "_enable_check_health"):
        extended._enable_check_health = False
    return tf.distribute.MultiWorkerMirroredStrategy()


def _restore(network: keras.Model) -> int:
    """Load the last checkpoint if this worker group is a restart; returns the epoch to continue from."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        network.load_weights(str(Path(directory) / WEIGHTS_FILE))
        return int(json.loads((Path(directory) / STATE_FILE).read_text())["epoch"])


def _in_memory(shard) -> dict[str, np.ndarray]:
    batches = list(shard.iter_batches(batch_size=None, batch_format="numpy"))
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}


def _length(rows: dict[str, np.ndarray]) -> int:
    return len(next(iter(rows.values())))
