"""Training throughput of the destination model with Ray Train: 1 worker against 2, on the same data.

    python -m bench.training_throughput [--trips 100000] [--epochs 4]

Runs the training job's own trainer (``training.destinations.make_trainer``) on one shared set of examples with
the global batch size fixed, so the only change is the number of workers. Reports examples/s per epoch (the
first epoch, which traces the graph, is left out of the median) and writes ``bench/results/training.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import statistics
import tempfile
from pathlib import Path

import ray

import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from recsys.features import Vocabulary
from recsys.synthetic_trips import TripsSpec, write_trips
from training.config import load_config
from training.data import find_trip_files, load_training_data
from training.destinations import loop_config, make_trainer, start_ray

RESULTS = Path(__file__).resolve().parent / "results"
SMOKE_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "train" / "smoke.yaml"
log = logging.getLogger("bench.training_throughput")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trips", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        data_uri = str(Path(scratch) / "trips")
        log.info("generating %d trips", args.trips)
        write_trips(TripsSpec(trips=args.trips, seed=7), data_uri)
        base = load_config(SMOKE_CONFIG, environ={})
        base = base.model_copy(update={
            "data_uri": data_uri, "checkpoint_uri": str(Path(scratch) / "checkpoints"),
            "hyperparameters": base.hyperparameters.model_copy(update={"epochs": args.epochs}),
        })
        start_ray(base.model_copy(update={"num_workers": max(args.workers)}), address=None)
        try:
            data = load_training_data(find_trip_files(data_uri), base.model.history_length)
            vocabulary = Vocabulary.fit(data.train_columns, base.hyperparameters.min_city_count)
            runs = []
            for workers in args.workers:
                config = base.model_copy(update={"num_workers": workers})
                log.info("training %d epochs with %d worker(s)", args.epochs, workers)
                # Every epoch's checkpoint kept: Ray Train reports only kept checkpoints' metrics afterwards.
                result = make_trainer(config, data, loop_config(config, data, vocabulary),
                                      run_name=f"bench-{workers}-workers", keep_checkpoints=None).fit()
                per_epoch = sorted((m["epoch"], m["examples_per_second"]) for _, m in result.best_checkpoints)
                if len(per_epoch) != args.epochs:
                    raise RuntimeError(f"metrics of {len(per_epoch)} of {args.epochs} epochs came back")
                steady = [eps for epoch, eps in per_epoch if epoch > 1]
                runs.append({"workers": workers, "global_batch_size": config.hyperparameters.batch_size,
                             "examples_per_second": statistics.median(steady),
                             "per_epoch": dict(per_epoch)})
                log.info("%d worker(s): %.0f examples/s (median of epochs 2+)", workers, runs[-1]["examples_per_second"])
        finally:
            ray.shutdown()
    report = {"benchmark": "training_throughput", "ran_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "trips": args.trips, "train_examples": len(data.train_columns["label"]), "runs": runs}
    write_report(report)


def write_report(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(report, indent=2))
    lines = [f"Training throughput, {report['trips']:,} trips ({report['train_examples']:,} examples), "
             f"{report['machine']['cpus']} CPUs, {report['ran_at']}", "",
             "| workers | global batch | examples/s (median, epochs 2+) | per epoch |", "|---|---|---|---|"]
    for run in report["runs"]:
        epochs = ", ".join(f"{eps:,.0f}" for _, eps in sorted(run["per_epoch"].items()))
        lines.append(f"| {run['workers']} | {run['global_batch_size']} | {run['examples_per_second']:,.0f} | {epochs} |")
    (RESULTS / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    labels = [f"{run['workers']} worker{'s' if run['workers'] > 1 else ''}" for run in report["runs"]]
    axis.bar(labels, [run["examples_per_second"] for run in report["runs"]], color="#4878a8")
    axis.set_ylabel("training examples / s")
    axis.set_title(f"Ray Train throughput ({report['machine']['cpus']} CPUs)")
    figure.tight_layout()
    figure.savefig(RESULTS / "training.png", dpi=120)


if __name__ == "__main__":
    main()
