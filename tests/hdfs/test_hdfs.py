"""Training data and model artifacts on a real HDFS (MiniDFSCluster: a NameNode, 2 DataNodes, replication 2)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from recsys import filesystem
from recsys.artifact_store import ModelStore, PredictionStore
from recsys.errors import ArtifactCorrupt
from recsys.destinations.features import Vocabulary
from recsys.manifest import SAVED_MODEL_DIR, VOCABULARY_FILE
from recsys.destinations.runtime import Predictor
from recsys.accommodations.catalogue import CATALOGUE_FILE
from recsys.accommodations.features import lists_from_searches
from recsys.accommodations.runtime import Ranker
from recsys.accommodations.synthetic_searches import write_searches
from recsys.synthetic_trips import TripsSpec, write_trips
from tests.recsys.test_artifact_store import artifact, manifest
from tests.serving import (
    NAME,
    deploy_version,
    recommend,
    requests_from,
    serve_config,
    serve_deploy,
    serve_shutdown,
    wait_for,
)
from tests.support import ACCOMMODATIONS_SMOKE_CONFIG, ROOT, SMOKE_CONFIG, SMOKE_SEARCHES, run_cli

pytestmark = pytest.mark.hdfs


@pytest.fixture(scope="module")
def hdfs_trips(hdfs) -> str:
    data = f"{hdfs.uri}/data/trips"
    write_trips(TripsSpec(trips=5000, seed=3), data)
    return data


def train_on_hdfs(hdfs, module: str, smoke_config: Path, data: str, tmp_path: Path, ray_tmp: Path) -> dict:
    """The job's CLI reading ``data`` from HDFS, checkpointing to and publishing to HDFS, for 2 epochs."""
    settings = yaml.safe_load(smoke_config.read_text())
    settings["hyperparameters"]["epochs"] = 2
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(settings))
    result = run_cli(module, "--config", str(config), env={
        "DATA_URI": data, "MODEL_STORE_URI": f"{hdfs.uri}/models", "CHECKPOINT_URI": f"{hdfs.uri}/checkpoints",
        "RAY_TMPDIR": str(ray_tmp)})
    assert result.returncode == 0, result.stderr[-4000:]
    return {"store": f"{hdfs.uri}/models", "version": json.loads(result.stdout.strip().splitlines()[-1])["version"]}


@pytest.fixture(scope="module")
def hdfs_trained(hdfs, hdfs_trips, tmp_path_factory, short_tmp) -> dict:
    """Trips generated into HDFS, trained from HDFS with checkpoints on HDFS, published to HDFS."""
    return train_on_hdfs(hdfs, "training.destinations", SMOKE_CONFIG, hdfs_trips,
                         tmp_path_factory.mktemp("hdfs-train"), short_tmp)


def test_synthetic_trips_are_written_to_hdfs_as_parquet(hdfs):
    uri = f"{hdfs.uri}/data/small"
    rows = write_trips(TripsSpec(trips=300, seed=1, trips_per_file=100), uri)
    fs, path = filesystem.resolve(uri)
    parts = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
    assert parts == ["_generator.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    with fs.open(f"{path}/part-00000.parquet", "rb") as f:
        assert pq.read_table(f).num_rows > 0
    assert rows > 300 * 4 - 1


def test_training_reads_hdfs_and_publishes_to_hdfs(hdfs, hdfs_trained):
    store = ModelStore(hdfs_trained["store"])
    assert store.resolve(NAME) == hdfs_trained["version"]
    manifest = store.manifest(NAME, hdfs_trained["version"])
    assert manifest.training["data_uri"].startswith(hdfs.uri)
    fs, _ = filesystem.resolve(hdfs.uri)
    checkpoints = fs.ls(f"/checkpoints/destinations-{hdfs_trained['version']}", detail=False)
    assert any(p.rsplit("/", 1)[-1].startswith("checkpoint_") for p in checkpoints)


def test_the_ranking_job_reads_searches_from_hdfs_and_publishes_to_hdfs(hdfs, hdfs_trips, tmp_path, short_tmp):
    searches = f"{hdfs.uri}/data/searches"
    write_searches(hdfs_trips, SMOKE_SEARCHES, searches)
    trained = train_on_hdfs(hdfs, "training.accommodations", ACCOMMODATIONS_SMOKE_CONFIG, searches, tmp_path,
                            short_tmp)
    store = ModelStore(trained["store"])
    assert store.resolve("accommodations") == trained["version"]
    local = store.fetch("accommodations", trained["version"], tmp_path / "cache")
    assert local.manifest.training["data_uri"] == searches and (local.path / CATALOGUE_FILE).exists()
    fs, _ = filesystem.resolve(hdfs.uri)
    assert any(p.rsplit("/", 1)[-1].startswith("checkpoint_")
               for p in fs.ls(f"/checkpoints/accommodations-{trained['version']}", detail=False))
    with fs.open("/data/searches/part-00000.parquet", "rb") as f:
        lists = lists_from_searches(pq.read_table(f), local.manifest.model["list_size"])
    scores = Ranker(local.path / SAVED_MODEL_DIR).score_shown({name: values[:50] for name, values in lists.items()})
    assert np.isfinite(scores[lists["prop_id"][:50] != 0]).all()


def test_precompute_reads_trips_and_the_model_from_hdfs_and_publishes_there(hdfs, hdfs_trips, hdfs_trained,
                                                                           tmp_path, short_tmp):
    result = run_cli("batch.precompute", "--config", str(ROOT / "configs" / "batch" / "destinations.yaml"), env={
        "INPUT_URI": hdfs_trips, "MODEL_STORE_URI": hdfs_trained["store"], "RAY_TMPDIR": str(short_tmp)})
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    predictions = PredictionStore(hdfs_trained["store"])
    manifest = predictions.manifest("destinations")
    assert summary["run"] == manifest.run and manifest.input.uri == hdfs_trips
    assert manifest.models == {NAME: ModelStore(hdfs_trained["store"]).resolve(NAME)}
    fs, _ = filesystem.resolve(hdfs.uri)
    users = set()
    for path in fs.find("/data/trips"):
        if path.endswith(".parquet"):
            with fs.open(path, "rb") as f:
                users.update(pq.read_table(f, columns=["user_id"])["user_id"].to_pylist())
    rows = []
    for uri in predictions.files("destinations"):  # checksums verified on HDFS
        with fs.open(filesystem.resolve(uri)[1], "rb") as f:
            rows += pq.read_table(f, columns=["user_id", "model_version"]).to_pylist()
    assert manifest.rows == len(rows) == len(users) and {r["user_id"] for r in rows} == users
    assert {r["model_version"] for r in rows} == set(manifest.models.values())


def test_a_replica_loads_its_model_from_hdfs_and_answers(serve_cluster, hdfs_trained):
    status = deploy_version(serve_cluster, hdfs_trained["store"], hdfs_trained["version"])
    assert status["model_uri"].startswith("hdfs://")
    vocabulary = Vocabulary.model_validate_json(
        ModelStore(hdfs_trained["store"]).read_file(NAME, hdfs_trained["version"], VOCABULARY_FILE))
    answer = recommend(serve_cluster, requests_from(vocabulary, 1)[0])
    assert answer.status_code == 200 and answer.json()["model_version"] == hdfs_trained["version"]


def test_a_replica_waits_for_an_unreachable_namenode_and_serves_once_it_is_back(serve_cluster, hdfs,
                                                                                hdfs_trained):
    serve_shutdown(serve_cluster)
    body = {"cities": [1, 2], "booker_country": "Elbonia", "device_class": "mobile"}
    hdfs.stop_namenode()
    try:
        serve_deploy(serve_cluster, serve_config(
            serve_cluster, hdfs_trained["store"], hdfs_trained["version"],
            args={"load_attempts": 200, "load_backoff_s": 0.5, "load_max_backoff_s": 2.0,
                  "cache_dir": str(serve_cluster.work_dir / "namenode-outage-cache")}))
        wait_for(lambda: "model store unreachable (attempt 2/200)" in serve_cluster.replica_logs(),
                 what="the replica's retry log line")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # no traffic reaches a replica that has no model
            try:
                assert recommend(serve_cluster, body, attempts=1).status_code != 200
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    finally:
        hdfs.start_namenode()
    answer = wait_for(lambda: (r := recommend(serve_cluster, body)).status_code == 200 and r, timeout=180,
                      what="an answer once the NameNode is back")
    assert answer.json()["model_version"] == hdfs_trained["version"]


def test_artifacts_still_load_with_one_datanode_lost(hdfs, hdfs_trained, tmp_path):
    hdfs.stop_datanode(0)
    try:
        local = ModelStore(hdfs_trained["store"]).fetch(NAME, hdfs_trained["version"], tmp_path / "cache")
        Predictor(local.path / SAVED_MODEL_DIR)
    finally:
        hdfs.start_datanode(0)


@pytest.mark.parametrize("damage", ["flip-a-byte", "truncate"])
def test_a_damaged_file_on_hdfs_is_refused(hdfs, tmp_path, damage):
    store = ModelStore(f"{hdfs.uri}/damaged-{damage}")
    store.publish(artifact(tmp_path), manifest("v1"))
    fs, _ = filesystem.resolve(hdfs.uri)
    path = f"/damaged-{damage}/destinations/v1/saved_model/variables/variables.data-00000-of-00001"
    data = bytearray(fs.cat(path))
    if damage == "flip-a-byte":
        data[100] ^= 0x01
    else:
        data = data[: len(data) // 2]
    with fs.open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(ArtifactCorrupt, match="variables.data-00000-of-00001: (sha256|size)"):
        store.fetch("destinations", "v1", tmp_path / "cache")


def test_an_interrupted_publish_to_hdfs_leaves_latest_alone(hdfs, tmp_path, monkeypatch):
    store = ModelStore(f"{hdfs.uri}/interrupted")
    store.publish(artifact(tmp_path / "a"), manifest("v1"))
    real_upload, uploads = ModelStore._upload, []

    def die_after_first_file(self, local: Path, remote: str) -> None:
        if uploads:
            raise KeyboardInterrupt
        uploads.append(remote)
        real_upload(self, local, remote)

    monkeypatch.setattr(ModelStore, "_upload", die_after_first_file)
    with pytest.raises(KeyboardInterrupt):
        store.publish(artifact(tmp_path / "b", b"new"), manifest("v2"))
    assert uploads
    assert store.resolve("destinations") == "v1"
    assert store.versions("destinations") == ["v1"]
    fs, _ = filesystem.resolve(hdfs.uri)
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/interrupted/destinations", detail=False)) == ["LATEST", "v1"]
