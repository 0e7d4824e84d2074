"""Training throughput of each model with Ray Train: 1 worker against 2, on the same data.

    python -m bench.training_throughput [--models destinations accommodations] [--trips 100000] [--epochs 4]

Runs each training job's own trainer (``training.job.make_trainer`` with the model's task) on one shared set of
examples with the global batch size fixed, so the only change is the number of workers. The ranking model trains
on the searches of a quarter of the trips' reservations (as `make bootstrap` does); its examples are searches
(lists of up to 40 shown properties). Reports examples/s per epoch (the first epoch, which traces the graph, is
left out of the median) and writes ``bench/results/training.{json,md,png}``.
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
from recsys.accommodations.synthetic_searches import SearchesSpec, write_searches
from recsys.synthetic_trips import TripsSpec, write_trips
from training import accommodations, destinations
from training.config import load_config
from recsys.tables import find_parquet_files
from training.job import make_trainer, start_ray
from training.task import Task

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "train"
# Each model's smoke config (its architecture and batch), the data it reads and what one example is.
MODELS: dict[str, tuple[Task, Path, str, str]] = {
    "destinations": (destinations.TASK, CONFIGS / "smoke.yaml", "trips", "next-city examples"),
    "accommodations": (accommodations.TASK, CONFIGS / "accommodations-smoke.yaml", "searches", "searches"),
}
log = logging.getLogger("bench.training_throughput")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--trips", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        data_uris = {"trips": str(Path(scratch) / "trips"), "searches": str(Path(scratch) / "searches")}
        log.info("generating %d trips", args.trips)
        write_trips(TripsSpec(trips=args.trips, seed=7), data_uris["trips"])
        if "accommodations" in args.models:
            log.info("generating the searches of a quarter of their reservations")
            write_searches(data_uris["trips"], SearchesSpec(fraction=0.25, seed=7), data_uris["searches"])
        start_ray(load_config(MODELS[args.models[0]][1], {}, MODELS[args.models[0]][0].config_type)
                  .model_copy(update={"num_workers": max(args.workers)}), address=None)
        try:
            for name in args.models:
                task, config_path, data_kind, unit = MODELS[name]
                results.append(measure(task, config_path, data_uris[data_kind], Path(scratch), args) | {
                    "model": name, "unit": unit})
        finally:
            ray.shutdown()
    report = {"benchmark": "training_throughput", "ran_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "trips": args.trips, "epochs": args.epochs, "models": results}
    write_report(report)


def measure(task: Task, config_path: Path, data_uri: str, scratch: Path, args: argparse.Namespace) -> dict:
    base = load_config(config_path, {}, task.config_type)
    base = base.model_copy(update={
        "data_uri": data_uri, "checkpoint_uri": str(scratch / "checkpoints"),
        "hyperparameters": base.hyperparameters.model_copy(update={"epochs": args.epochs}),
    })
    data = task.prepare(find_parquet_files(data_uri, task.check_schema), base)
    state = task.fit_state(data, base)
    runs = []
    for workers in args.workers:
        config = base.model_copy(update={"num_workers": workers})
        log.info("%s: training %d epochs with %d worker(s)", task.name, args.epochs, workers)
        # Every epoch's checkpoint kept: Ray Train reports only kept checkpoints' metrics afterwards.
        result = make_trainer(task, config, data, state, run_name=f"bench-{task.name}-{workers}-workers",
                              keep_checkpoints=None).fit()
        per_epoch = sorted((m["epoch"], m["examples_per_second"]) for _, m in result.best_checkpoints)
        if len(per_epoch) != args.epochs:
            raise RuntimeError(f"metrics of {len(per_epoch)} of {args.epochs} epochs came back")
        steady = [eps for epoch, eps in per_epoch if epoch > 1]
        runs.append({"workers": workers, "global_batch_size": config.hyperparameters.batch_size,
                     "examples_per_second": statistics.median(steady), "per_epoch": dict(per_epoch)})
        log.info("%s, %d worker(s): %.0f examples/s (median of epochs 2+)", task.name, workers,
                 runs[-1]["examples_per_second"])
    return {"train_examples": task.train_examples(data), "runs": runs}


def write_report(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(report, indent=2))
    lines = [f"Training throughput, {report['trips']:,} trips, {report['epochs']} epochs, "
             f"{report['machine']['cpus']} CPUs, {report['ran_at']}", "",
             "| model | training examples | workers | global batch | examples/s (median, epochs 2+) | per epoch |",
             "|---|---|---|---|---|---|"]
    for model in report["models"]:
        for run in model["runs"]:
            epochs = ", ".join(f"{eps:,.0f}" for _, eps in sorted(run["per_epoch"].items()))
            lines.append(f"| {model['model']} | {model['train_examples']:,} {model['unit']} | {run['workers']} | "
                         f"{run['global_batch_size']} | {run['examples_per_second']:,.0f} | {epochs} |")
    (RESULTS / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(report["models"]), figsize=(4.5 * len(report["models"]), 3.5), squeeze=False)
    for axis, model in zip(axes[0], report["models"]):
        labels = [f"{run['workers']} worker{'s' if run['workers'] > 1 else ''}" for run in model["runs"]]
        axis.bar(labels, [run["examples_per_second"] for run in model["runs"]], color="#4878a8")
        axis.set_ylabel(f"{model['unit']} / s")
        axis.set_title(model["model"])
    figure.suptitle(f"Ray Train throughput ({report['machine']['cpus']} CPUs)")
    figure.tight_layout()
    figure.savefig(RESULTS / "training.png", dpi=120)


if __name__ == "__main__":
    main()
