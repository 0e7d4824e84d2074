from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from recsys.destinations import signature
from recsys import filesystem
from recsys.artifact_store import ModelStore, PredictionStore
from recsys.errors import ArtifactCorrupt, ArtifactNotFound, StoreError, StoreUnavailable
from recsys.manifest import PREDICTION_MANIFEST_FILE, Manifest, Metrics, PredictionInput, PredictionManifest


def manifest(version: str, name: str = "destinations") -> Manifest:
    return Manifest(name=name, version=version, created_at=dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
                    frameworks={"tensorflow": "2.21.0"}, signature=signature.describe(),
                    vocabulary_sizes={"cities": 10}, model={}, training={},
                    metrics=Metrics(accuracy_at_4=0.3, baselines={"markov": 0.2, "popularity": 0.05}, test_trips=9),
                    files={})


def artifact(tmp_path: Path, content: bytes = b"weights") -> Path:
    source = tmp_path / "export"
    (source / "saved_model" / "variables").mkdir(parents=True, exist_ok=True)
    (source / "saved_model" / "saved_model.pb").write_bytes(b"graph" * 100)
    (source / "saved_model" / "variables" / "variables.data-00000-of-00001").write_bytes(content * 1000)
    return source


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_publish_then_read_back(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    published = store.publish(artifact(tmp_path), manifest("v1"))
    assert sorted(published.files) == ["saved_model/saved_model.pb",
                                       "saved_model/variables/variables.data-00000-of-00001"]
    assert published.files["saved_model/saved_model.pb"].size == 500
    assert store.versions("destinations") == ["v1"]
    assert store.resolve("destinations") == "v1"
    assert (tmp_path / "store" / "destinations" / "LATEST").read_text() == "v1\n"
    assert store.manifest("destinations", "latest") == published


def test_latest_moves_to_the_newest_publish(tmp_path):
    store = ModelStore(f"file://{tmp_path}/store")
    store.publish(artifact(tmp_path / "a"), manifest("v1"))
    store.publish(artifact(tmp_path / "b", b"better"), manifest("v2"))
    assert store.versions("destinations") == ["v1", "v2"]
    assert store.resolve("destinations", "latest") == "v2"
    assert store.resolve("destinations", "v1") == "v1"


def test_fetch_verifies_and_reuses_the_cache(tmp_path, caplog):
    store = ModelStore(str(tmp_path / "store"))
    store.publish(artifact(tmp_path), manifest("v1"))
    local = store.fetch("destinations", "latest", tmp_path / "cache")
    assert local.path == tmp_path / "cache" / "destinations" / "v1"
    assert (local.path / "saved_model" / "saved_model.pb").read_bytes() == b"graph" * 100
    caplog.set_level("INFO")
    again = store.fetch("destinations", "v1", tmp_path / "cache")
    assert again.path == local.path
    assert "reusing verified cache" in caplog.text


def test_one_flipped_byte_in_the_store_is_caught(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    store.publish(artifact(tmp_path), manifest("v1"))
    flip_one_byte(tmp_path / "store" / "destinations" / "v1" / "saved_model" / "variables"
                  / "variables.data-00000-of-00001")
    with pytest.raises(ArtifactCorrupt, match=r"v1/saved_model/variables/variables.data-00000-of-00001: "
                                              r"sha256 [0-9a-f]{64}, manifest says [0-9a-f]{64}"):
        store.fetch("destinations", "v1", tmp_path / "cache")
    assert not (tmp_path / "cache" / "destinations" / "v1").exists()
    assert [p.name for p in (tmp_path / "cache" / "destinations").iterdir()] == []


def test_a_damaged_cache_is_fetched_again(tmp_path, caplog):
    store = ModelStore(str(tmp_path / "store"))
    store.publish(artifact(tmp_path), manifest("v1"))
    local = store.fetch("destinations", "v1", tmp_path / "cache")
    flip_one_byte(local.path / "saved_model" / "saved_model.pb")
    store.fetch("destinations", "v1", tmp_path / "cache")
    assert "cached copy is damaged" in caplog.text
    assert (local.path / "saved_model" / "saved_model.pb").read_bytes() == b"graph" * 100


def test_an_interrupted_publish_leaves_latest_on_the_old_version(tmp_path, monkeypatch):
    store = ModelStore(str(tmp_path / "store"))
    store.publish(artifact(tmp_path / "a"), manifest("v1"))
    uploads = []
    real_upload = ModelStore._upload

    def die_after_first_file(self, local, remote):
        if uploads:
            raise KeyboardInterrupt  # the worst case: not even an Exception
        uploads.append(remote)
        real_upload(self, local, remote)

    monkeypatch.setattr(ModelStore, "_upload", die_after_first_file)
    with pytest.raises(KeyboardInterrupt):
        store.publish(artifact(tmp_path / "b", b"new"), manifest("v2"))
    assert uploads, "the publish was interrupted midway, after a file was uploaded"
    assert store.resolve("destinations") == "v1"
    assert store.versions("destinations") == ["v1"]
    assert sorted(p.name for p in (tmp_path / "store" / "destinations").iterdir()) == ["LATEST", "v1"]


def test_leftovers_of_a_killed_publish_are_not_versions(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    store.publish(artifact(tmp_path), manifest("v1"))
    (tmp_path / "store" / "destinations" / ".staging-v2-0123abcd" / "saved_model").mkdir(parents=True)
    assert store.versions("destinations") == ["v1"]


def test_a_version_is_published_once(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    store.publish(artifact(tmp_path), manifest("v1"))
    with pytest.raises(StoreError, match=r"destinations/v1: version already exists"):
        store.publish(artifact(tmp_path), manifest("v1"))


def test_unknown_models_and_versions_are_reported(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    with pytest.raises(ArtifactNotFound, match=r"store/destinations: no published version \(no LATEST file\)"):
        store.resolve("destinations")
    store.publish(artifact(tmp_path), manifest("v1"))
    with pytest.raises(ArtifactNotFound, match=r"v9/manifest.json: not found"):
        store.fetch("destinations", "v9", tmp_path / "cache")


def test_a_broken_manifest_is_reported_as_corrupt(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    store.publish(artifact(tmp_path), manifest("v1"))
    (tmp_path / "store" / "destinations" / "v1" / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactCorrupt, match=r"v1/manifest.json: not a valid manifest"):
        store.manifest("destinations", "v1")


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", ".."], ids=["parent", "slash", "empty",
                                                                            "dot", "dotdot"])
def test_names_that_are_not_safe_path_segments_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="must match"):
        ModelStore(str(tmp_path)).resolve(name)


def test_an_unwritable_store_fails_the_write_check(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StoreError, match=r"a-file/models"):
        ModelStore(str(tmp_path / "a-file" / "models")).check_writable()


def test_read_file_returns_one_verified_file(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    store.publish(artifact(tmp_path), manifest("v1"))
    assert store.read_file("destinations", "latest", "saved_model/saved_model.pb") == b"graph" * 100
    with pytest.raises(ArtifactNotFound, match=r"v1/vocabulary.json: not in the manifest"):
        store.read_file("destinations", "v1", "vocabulary.json")
    flip_one_byte(tmp_path / "store" / "destinations" / "v1" / "saved_model" / "saved_model.pb")
    with pytest.raises(ArtifactCorrupt, match=r"saved_model.pb: sha256 [0-9a-f]{64} and 500 bytes"):
        store.read_file("destinations", "v1", "saved_model/saved_model.pb")


@pytest.mark.parametrize(("error", "unavailable"), [
    (OSError("Connection refused (os error 111)"), True),
    (OSError("Connection reset by peer (os error 104)"), True),
    (ConnectionRefusedError(111, "Connection refused"), True),
    (TimeoutError("timed out"), True),
    (OSError("Is a directory (os error 21)"), False),
    (OSError("disk quota exceeded"), False),
], ids=["hdfs-native-refused", "hdfs-native-reset", "refused", "timeout", "other-os-error", "plain"])
def test_network_failures_are_retryable_other_errors_are_not(tmp_path, monkeypatch, error, unavailable):
    store = ModelStore(str(tmp_path / "store"))

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(store._fs, "exists", fail)
    with pytest.raises(StoreError) as raised:
        store.versions("destinations")
    assert isinstance(raised.value, StoreUnavailable) is unavailable
    assert isinstance(raised.value, StoreError)


def prediction_manifest(run: str) -> PredictionManifest:
    return PredictionManifest(name="destinations", run=run, created_at=dt.datetime(2026, 11, 30, tzinfo=dt.UTC),
                              models={"destinations": "v1"}, input=PredictionInput(uri="/trips", files=1, rows=9),
                              rows=3, parameters={"k": 4}, unknown={}, seconds=1.0, files={})


def write_run(staging_uri: str, content: bytes = b"rows") -> None:
    _, path = filesystem.resolve(staging_uri)
    (Path(path) / "part-00000-0.parquet").write_bytes(content)


def test_a_prediction_run_is_published_whole_with_its_checksums_then_becomes_latest(tmp_path):
    predictions = PredictionStore(str(tmp_path / "models"))
    for run, content in (("r1", b"old"), ("r2", b"new")):
        with predictions.staging("destinations", run) as staging:
            write_run(staging, content)
            assert predictions.versions("destinations") == (["r1"] if run == "r2" else [])
            published = predictions.publish(staging, prediction_manifest(run))
    assert published.files["part-00000-0.parquet"].size == 3
    assert predictions.resolve("destinations") == "r2" and predictions.versions("destinations") == ["r1", "r2"]
    assert predictions.manifest("destinations") == published
    [part] = predictions.files("destinations")
    assert Path(filesystem.resolve(part)[1]).read_bytes() == b"new"
    assert (tmp_path / "models" / "predictions" / "destinations" / "r2" / PREDICTION_MANIFEST_FILE).is_file()


def test_a_failed_run_leaves_nothing_and_the_previous_run_latest(tmp_path):
    predictions = PredictionStore(str(tmp_path / "models"))
    with predictions.staging("destinations", "r1") as staging:
        write_run(staging)
        predictions.publish(staging, prediction_manifest("r1"))
    with pytest.raises(KeyboardInterrupt), predictions.staging("destinations", "r2") as staging:
        write_run(staging)
        raise KeyboardInterrupt
    assert sorted(p.name for p in (tmp_path / "models" / "predictions" / "destinations").iterdir()) == ["LATEST", "r1"]
    assert predictions.resolve("destinations") == "r1"


def test_a_damaged_prediction_file_is_refused(tmp_path):
    predictions = PredictionStore(str(tmp_path / "models"))
    with predictions.staging("destinations", "r1") as staging:
        write_run(staging)
        predictions.publish(staging, prediction_manifest("r1"))
    flip_one_byte(tmp_path / "models" / "predictions" / "destinations" / "r1" / "part-00000-0.parquet")
    with pytest.raises(ArtifactCorrupt, match="part-00000-0.parquet: sha256"):
        predictions.files("destinations")
    with pytest.raises(StoreError, match="r1: run already exists"), predictions.staging("destinations", "r1"):
        pass
