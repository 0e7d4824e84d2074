"""Cold start of a Serve replica: from deploying it to its first answer, and the replica's own account of that
time (fetch + checksum + load + warm-up), for the smoke model and a ~100 MB model, from local disk and from HDFS.

Each start uses an empty model cache, so every byte is fetched and verified. Ray and Serve are already up, as they
are when a cluster adds a replica; the time is the replica's: actor start, imports, model, warm-up.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import ray
from ray import serve

from recsys.destinations import signature
from recsys.artifact_store import ModelStore
from recsys.destinations.features import Vocabulary
from recsys.manifest import VOCABULARY_FILE, Manifest, Metrics
from recsys.destinations.model import DestinationRecommender, ModelConfig, build_network
from serve_apps.destinations import Destinations
from serve_apps.core.settings import ReplicaOptions

ROOT = Path(__file__).resolve().parent.parent
NAME = "destinations"
BIG_CITIES = 50_000  # 50k cities x 256 dimensions, embedding and output layer: about 100 MB of float32
log = logging.getLogger("bench.cold_start")


def measure(work: Path) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    store = ModelStore(str(work / "store"))
    smoke = _copy_latest(ModelStore(str(ROOT / ".data" / "models")), store, work)
    big = _big_model(store, work)
    stores = {"local disk": store}
    hdfs = _start_hdfs(work)
    if hdfs is not None:
        remote = ModelStore(f"{hdfs.uri}/models")
        for version in (smoke, big):
            local = store.fetch(NAME, version, work / "copy-cache")
            remote.publish(local.path, local.manifest)
        stores["HDFS"] = remote
    results = []
    # A Ray of our own, in its own temp dir (short: it holds Unix sockets); shut down below.
    ray_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(address="local", num_cpus=4, include_dashboard=False, _temp_dir=ray_dir)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": 8010})
        for source, target in stores.items():
            for label, version in (("smoke model", smoke), ("~100 MB model", big)):
                results.append(_start_replica(target, version, label, source, work))
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)
        if hdfs is not None:
            hdfs.close()
    return results


def _start_replica(store: ModelStore, version: str, label: str, source: str, work: Path) -> dict:
    cache = work / "cold-cache"
    shutil.rmtree(cache, ignore_errors=True)
    size = sum(entry.size for entry in store.manifest(NAME, version).files.values())
    # The default batching settings (those of configs/serve/*.yaml): warm-up covers batches of up to 1024 rows.
    app = Destinations.options(user_config={"model_uri": f"{store.uri}/{NAME}", "model_version": version}).bind(
        ReplicaOptions(cache_dir=cache))
    started = time.perf_counter()
    serve.run(app, name="cold-start", route_prefix="/destinations")
    ready = time.perf_counter() - started
    status = httpx.get("http://127.0.0.1:8010/destinations/model", timeout=30).json()
    answer = httpx.post("http://127.0.0.1:8010/destinations/recommend", timeout=30,
                        json={"cities": [1, 2], "booker_country": "x", "device_class": "y"})
    serve.delete("cold-start")
    result = {"model": label, "source": source, "bytes": size, "replica_start_to_ready_s": round(ready, 2),
              "fetch_verify_load_warmup_s": status["load_seconds"], "answered": answer.status_code == 200}
    log.info("cold start %s from %s (%.0f MB): ready in %.1f s, of which fetch+verify+load+warm-up %.1f s",
             label, source, size / 1e6, ready, status["load_seconds"])
    return result


def _copy_latest(source: ModelStore, target: ModelStore, work: Path) -> str:
    local = source.fetch(NAME, "latest", work / "copy-cache")
    if local.manifest.version not in target.versions(NAME):
        target.publish(local.path, local.manifest)
    return local.manifest.version


def _big_model(store: ModelStore, work: Path) -> str:
    version = "bench-100mb"
    if version in store.versions(NAME):
        if VOCABULARY_FILE in store.manifest(NAME, version).files:
            return version
        shutil.rmtree(work / "store" / NAME / version)  # published before runtimes required the vocabulary
    vocabulary = Vocabulary(cities=list(range(1, BIG_CITIES + 1)), booker_countries=["x"], device_classes=["y"],
                            affiliates=[1])
    config = ModelConfig(history_length=8, city_embedding_dim=256, hidden_units=256)
    export = work / "big-export"
    shutil.rmtree(export, ignore_errors=True)
    DestinationRecommender(build_network(config, vocabulary.sizes()), vocabulary, config).save(
        str(export / "saved_model"))
    (export / VOCABULARY_FILE).write_text(vocabulary.model_dump_json())
    store.publish(export, Manifest(
        name=NAME, version=version, created_at=dt.datetime.now(dt.UTC), frameworks={},
        signature=signature.describe(), vocabulary_sizes=vocabulary.sizes(), model=config.model_dump(),
        training={"note": "untrained, for measuring cold starts of a large artifact"},
        metrics=Metrics(accuracy_at_4=0.0, baselines={"markov": 0.0, "popularity": 0.0}, test_trips=0), files={}))
    shutil.rmtree(export, ignore_errors=True)
    return version


def _start_hdfs(work: Path):
    shutil.rmtree(work / "hdfs", ignore_errors=True)  # an earlier run's cluster
    try:
        from tests.hdfs.harness import MiniHdfs

        return MiniHdfs(work / "hdfs")
    except (RuntimeError, OSError) as err:
        log.error("no HDFS for the cold-start runs (%s); measuring local disk only", err)
        return None
