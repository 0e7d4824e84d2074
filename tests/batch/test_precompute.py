"""The precompute job end to end through its real CLI: Ray Data on a local Ray, the session's trained models, the
output read back without this project's code and checked against the SavedModels' own answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from batch.output import DESTINATION_SCHEMA, TRIP_ANSWER_SCHEMA
from recsys.accommodations.catalogue import CATALOGUE_FILE, Catalogue
from recsys.accommodations.runtime import Ranker, Searches
from recsys.artifact_store import ModelStore, PredictionStore
from recsys.destinations.runtime import Predictor, pad_trips
from recsys.manifest import PREDICTION_MANIFEST_FILE, SAVED_MODEL_DIR
from recsys.trips import TRIP_SCHEMA
from tests.support import ROOT, run_cli

CONFIGS = ROOT / "configs" / "batch"
UNKNOWN_CITY = 99_999_999


def config_file(tmp_path: Path, base: str, input_uri: str, store_uri: str, **changes) -> Path:
    settings = yaml.safe_load((CONFIGS / base).read_text())
    settings.update(input_uri=input_uri, store_uri=store_uri, **changes)
    path = tmp_path / f"{base}-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def precompute(config: Path, ray_tmp: Path, **env: str) -> subprocess.CompletedProcess:
    return run_cli("batch.precompute", "--config", str(config), env={"RAY_TMPDIR": str(ray_tmp), **env})


def summary_of(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store(both_models_store, tmp_path_factory) -> ModelStore:
    """Both session models in a store of this module's own (the job publishes predictions into it)."""
    root = tmp_path_factory.mktemp("precompute-store")
    source, store = ModelStore(both_models_store.uri), ModelStore(str(root / "models"))
    for name in ("destinations", "accommodations"):
        fetched = source.fetch(name, source.resolve(name), root / "fetch")
        store.publish(fetched.path, fetched.manifest)
    return store


@pytest.fixture(scope="module")
def trips_with_strangers(smoke_data, tmp_path_factory) -> Path:
    """The smoke trips plus three users whose latest trip holds a value no model has seen: a city (in the middle of
    the trip), a booker country, an affiliate (on every reservation: the last one's context is scored)."""
    path = tmp_path_factory.mktemp("input") / "trips"
    path.mkdir()
    for part in sorted(smoke_data.glob("*.parquet")):
        (path / part.name).write_bytes(part.read_bytes())
    base = pq.read_table(smoke_data).slice(0, 4).to_pylist()
    strangers = []
    changes = [{"city_id": UNKNOWN_CITY}, {"booker_country": "Atlantis"}, {"affiliate_id": 123_456_789}]
    for i, change in enumerate(changes):
        for step, row in enumerate(base):
            changed = step == 2 or "city_id" not in change
            strangers.append({**row, "user_id": 9_000_000 + i, "utrip_id": f"9000000{i}_1",
                              **(change if changed else {})})
    pq.write_table(pa.Table.from_pylist(strangers, schema=TRIP_SCHEMA), path / "strangers.parquet")
    return path


@pytest.fixture(scope="module")
def destinations_run(store, trips_with_strangers, tmp_path_factory, short_tmp) -> dict:
    config = config_file(tmp_path_factory.mktemp("configs"), "destinations.yaml", str(trips_with_strangers),
                         store.uri)
    return summary_of(precompute(config, short_tmp))


def latest_trips(trips: pd.DataFrame) -> pd.DataFrame:
    """Each user's latest trip, computed here independently of the job: the trip of the user's last reservation,
    its cities in check-in order."""
    trips = trips.sort_values(["user_id", "checkin", "utrip_id"])
    last = trips.groupby("user_id").tail(1).set_index("user_id")
    open_trips = trips[trips["utrip_id"].values == last.loc[trips["user_id"], "utrip_id"].values]
    return open_trips.groupby("user_id").agg(utrip_id=("utrip_id", "last"), cities=("city_id", list),
                                            booker_country=("booker_country", "last"),
                                            device_class=("device_class", "last"),
                                            affiliate_id=("affiliate_id", "last"), checkout=("checkout", "last"))


def test_one_prediction_per_user_with_the_version_latest_named_at_the_start(store, trips_with_strangers,
                                                                           destinations_run):
    trips = pq.read_table(trips_with_strangers).to_pandas()
    users = trips["user_id"].nunique()
    predictions = PredictionStore(store.uri)
    manifest = predictions.manifest("destinations")
    assert destinations_run["rows"] == manifest.rows == users
    assert manifest.models == {"destinations": store.resolve("destinations")} == destinations_run["models"]
    assert manifest.input.rows == len(trips) and manifest.input.files == 2 and manifest.parameters["k"] == 10
    assert destinations_run["output"] == f"{predictions.uri}/destinations/{manifest.run}"
    # Readable without this project's code: pandas on the run's directory (the manifest is _-prefixed).
    run_dir = Path(predictions.uri) / "destinations" / manifest.run
    table = pd.read_parquet(run_dir)
    assert len(table) == users and table["user_id"].is_unique
    assert set(table["model_version"]) == {manifest.models["destinations"]}
    assert (table["next_cities"].map(len) == 10).all() and (table["scores"].map(len) == 10).all()
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([*manifest.files, PREDICTION_MANIFEST_FILE])
    assert all(name.startswith("part-") for name in manifest.files)
    assert all(pq.read_schema(run_dir / name) == DESTINATION_SCHEMA for name in manifest.files)  # as documented
    assert predictions.files("destinations")  # every file matches its sha256


def test_rows_with_unknown_ids_are_scored_and_counted(store, destinations_run):
    manifest = PredictionStore(store.uri).manifest("destinations")
    assert manifest.unknown == {"unknown_cities": 1, "unknown_booker_country": 1, "unknown_device_class": 0,
                                "unknown_affiliate": 1}
    table = pd.read_parquet(Path(PredictionStore(store.uri).uri) / "destinations" / manifest.run)
    strangers = table[table["user_id"] >= 9_000_000].set_index("user_id")
    assert list(strangers.index) == [9_000_000, 9_000_001, 9_000_002]
    assert strangers["unknown_cities"].tolist() == [True, False, False]
    assert strangers["unknown_booker_country"].tolist() == [False, True, False]
    assert strangers["unknown_affiliate"].tolist() == [False, False, True]
    assert (strangers["next_cities"].map(len) == 10).all()


def test_predictions_equal_the_saved_models_own_top_k(store, trips_with_strangers, destinations_run, tmp_path):
    manifest = PredictionStore(store.uri).manifest("destinations")
    table = pd.read_parquet(Path(PredictionStore(store.uri).uri) / "destinations" / manifest.run)
    sample = table.sample(64, random_state=1).set_index("user_id")
    expected = latest_trips(pq.read_table(trips_with_strangers).to_pandas()).loc[sample.index]
    local = store.fetch("destinations", manifest.models["destinations"], tmp_path)
    predictor = Predictor(local.path / SAVED_MODEL_DIR)
    history = pad_trips(expected["cities"].tolist(), width=local.manifest.model["history_length"])
    ids, scores = predictor.predict(history, expected["booker_country"].tolist(), expected["device_class"].tolist(),
                                    expected["affiliate_id"].to_numpy(), 10)
    assert sample["utrip_id"].tolist() == expected["utrip_id"].tolist()
    assert np.stack(sample["next_cities"].to_numpy()).tolist() == ids.tolist()
    np.testing.assert_allclose(np.stack(sample["scores"].to_numpy()), scores, rtol=1e-4, atol=1e-6)


def test_the_trip_answer_is_the_live_endpoints_composition_offline(store, smoke_data, tmp_path, short_tmp):
    trips = pq.read_table(smoke_data).to_pandas()
    subset = tmp_path / "trips"
    subset.mkdir()
    kept = trips[trips["user_id"] < trips["user_id"].min() + 1500]
    pq.write_table(pa.Table.from_pandas(kept, schema=TRIP_SCHEMA, preserve_index=False), subset / "part-0.parquet")
    config = config_file(tmp_path, "trips.yaml", str(subset), store.uri)
    summary = summary_of(precompute(config, short_tmp))
    manifest = PredictionStore(store.uri).manifest("trips")
    assert summary["rows"] == manifest.rows == kept["user_id"].nunique()
    assert manifest.models == {name: store.resolve(name) for name in ("destinations", "accommodations")}
    run_dir = Path(PredictionStore(store.uri).uri) / "trips" / manifest.run
    assert all(pq.read_schema(run_dir / name) == TRIP_ANSWER_SCHEMA for name in manifest.files)
    table = pd.read_parquet(run_dir)
    local = store.fetch("accommodations", manifest.models["accommodations"], tmp_path / "cache")
    ranker, catalogue = Ranker(local.path / SAVED_MODEL_DIR), Catalogue.read(local.path / CATALOGUE_FILE)
    expected = latest_trips(kept)
    for _, row in table.sample(20, random_state=2).iterrows():
        assert len(row["next_cities"]) == 4 and [len(p) for p in row["properties"]][3] == 0
        checkout = expected.loc[row["user_id"], "checkout"]
        assert row["checkin"] == checkout
        for city, properties, scores in list(zip(row["next_cities"], row["properties"], row["property_scores"]))[:3]:
            search = Searches.from_rows([{"city_id": int(city), "booker_country": expected.loc[row["user_id"],
                                                                                              "booker_country"],
                                          "device_class": expected.loc[row["user_id"], "device_class"],
                                          "checkin": checkout, "nights": 2}])
            candidates = catalogue.of_city(int(city))
            own_ids, own_scores = ranker.rank(search.context(), candidates[None, :],
                                              np.zeros((1, len(candidates)), np.float32), 3)
            n = min(3, len(candidates))
            assert list(properties) == own_ids[0][:n].tolist()
            np.testing.assert_allclose(scores, own_scores[0][:n], rtol=1e-4, atol=1e-6)


def test_an_interrupted_run_publishes_nothing_and_keeps_the_previous_run(store, trips_with_strangers,
                                                                        destinations_run, tmp_path, short_tmp):
    predictions = PredictionStore(store.uri)
    before = predictions.resolve("destinations")
    config = config_file(tmp_path, "destinations.yaml", str(trips_with_strangers), store.uri)
    job = subprocess.Popen([sys.executable, "-m", "batch.precompute", "--config", str(config)], cwd=ROOT,
                           env={**os.environ, "RAY_TMPDIR": str(short_tmp)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           # Ctrl-C's SIGINT even when the suite itself runs in the background (SIGINT ignored).
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    sets = Path(predictions.uri) / "destinations"
    deadline = time.monotonic() + 300
    while not any(p.name.startswith(".staging-") for p in sets.iterdir()):
        assert job.poll() is None and time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.2)
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=300)
    assert job.returncode != 0, stderr[-2000:]
    assert predictions.resolve("destinations") == before
    assert sorted(p.name for p in sets.iterdir()) == sorted(["LATEST", *predictions.versions("destinations")])
    assert before in predictions.versions("destinations")


@pytest.mark.parametrize("case", ["missing input", "empty input", "wrong schema", "unknown version",
                                  "unwritable output", "bad setting"])
def test_bad_input_exits_2_with_one_error_line_and_publishes_nothing(case, store, trips_with_strangers, tmp_path,
                                                                    short_tmp):
    input_uri, store_uri, changes, expected = str(trips_with_strangers), store.uri, {}, None
    if case == "missing input":
        input_uri, expected = str(tmp_path / "nowhere"), f"{tmp_path / 'nowhere'}: data path does not exist"
    elif case == "empty input":
        (tmp_path / "empty").mkdir()
        input_uri, expected = str(tmp_path / "empty"), "no .parquet files under this path"
    elif case == "wrong schema":
        (tmp_path / "wrong").mkdir()
        pq.write_table(pa.table({"user_id": [1], "city_id": ["x"]}), tmp_path / "wrong" / "part-0.parquet")
        input_uri, expected = str(tmp_path / "wrong"), "part-0.parquet: column 'checkin' is missing"
    elif case == "unknown version":
        changes, expected = {"models": {"destinations": "v9-nope"}}, "destinations/v9-nope/manifest.json: not found"
    elif case == "unwritable output":
        (tmp_path / "models").mkdir()
        for name in ("destinations", "accommodations"):
            (tmp_path / "models" / name).symlink_to(Path(store.uri) / name)
        (tmp_path / "models" / "predictions").write_text("a file where the predictions directory should be")
        store_uri, expected = str(tmp_path / "models"), "predictions"
    else:
        changes, expected = {"k": 0}, "k: Input should be greater than or equal to 1"
    published = {name: PredictionStore(store.uri).versions(name) for name in ("destinations", "trips")}
    result = precompute(config_file(tmp_path, "destinations.yaml", input_uri, store_uri, **changes), short_tmp)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]
    assert result.stdout == ""
    assert {name: PredictionStore(store.uri).versions(name) for name in ("destinations", "trips")} == published
