"""The trip answer on a real Serve: both model apps and the trips app from configs/serve/local.yaml, over HTTP. The
answer is the two models' own answers put together; a slow or missing ranking leaves properties out, a missing
destination model is 503; a hot swap of one model leaves the other alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serving import local_config, point_at, post, serve_deploy, wait_for

pytestmark = pytest.mark.usefixtures("serve_cluster")

TRIP = {"cities": [8183, 15626], "booker_country": "Elbonia", "device_class": "mobile", "checkin": "2026-12-18",
        "nights": 2, "adults": 2, "k": 4, "cities_with_properties": 3, "properties_per_city": 3}


def base(cluster) -> str:
    return f"http://127.0.0.1:{cluster.http_port}"


def trips_config(cluster, store, applications=("destinations", "accommodations", "trips"),
                 accommodations_version: str | None = None, **trips_args) -> dict:
    config = local_config(cluster, list(applications))
    if "destinations" in applications:
        point_at(config, "destinations", f"{store.uri}/destinations", store.destinations, cluster)
    if "accommodations" in applications:
        point_at(config, "accommodations", f"{store.uri}/accommodations",
                 accommodations_version or store.accommodations, cluster)
    [trips] = [a for a in config["applications"] if a["name"] == "trips"]
    trips["args"].update(trips_args)
    return config


def deploy(cluster, config: dict) -> None:
    serve_deploy(cluster, config)
    for application in config["applications"]:
        path = "/docs" if application["name"] == "trips" else "/model"
        wait_for(lambda: httpx.get(f"{base(cluster)}{application['route_prefix']}{path}", timeout=10)
                 .status_code == 200, timeout=180, what=f"{application['name']} to answer")


def trip(cluster, body: dict = TRIP, attempts: int = 5) -> httpx.Response:
    return post(f"{base(cluster)}/trips/recommend", attempts=attempts, json=body, timeout=30)


def served_version(cluster, application: str) -> str | None:
    """The version the application's replica reports; None while the route answers anything but its status."""
    response = httpx.get(f"{base(cluster)}/{application}/model", timeout=10)
    return response.json()["version"] if response.status_code == 200 else None


def answered(cluster, condition, what: str, attempts: int = 5) -> httpx.Response:
    """The first trip answer that meets ``condition``: a redeploy replaces replicas while the old ones still answer."""
    def check() -> httpx.Response | None:
        answer = trip(cluster, attempts=attempts)
        return answer if condition(answer) else None

    return wait_for(check, timeout=180, what=what)


@pytest.fixture()
def all_three(serve_cluster, both_models_store):
    deploy(serve_cluster, trips_config(serve_cluster, both_models_store))
    answered(serve_cluster, lambda r: r.status_code == 200 and not r.json()["properties_omitted"],
             "trips with properties")


def test_the_trip_answer_is_both_models_own_answers(serve_cluster, both_models_store, all_three):
    answer = trip(serve_cluster)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_versions"] == {"destinations": both_models_store.destinations,
                                      "accommodations": both_models_store.accommodations}
    assert body["properties_omitted"] is False and body["omitted_reason"] is None
    destinations = post(f"{base(serve_cluster)}/destinations/recommend", timeout=30, json={
        key: TRIP[key] for key in ("cities", "booker_country", "device_class", "k")}).json()
    assert [d["city_id"] for d in body["destinations"]] == destinations["cities"]
    assert [d["score"] for d in body["destinations"]] == pytest.approx(destinations["scores"], rel=1e-5)
    for i, destination in enumerate(body["destinations"]):
        if i >= TRIP["cities_with_properties"]:
            assert destination["properties"] is None
            continue
        ranked = post(f"{base(serve_cluster)}/accommodations/rank", timeout=30, json={
            "city_id": destination["city_id"], "k": TRIP["properties_per_city"],
            **{key: TRIP[key] for key in ("booker_country", "device_class", "checkin", "nights", "adults")}}).json()
        assert destination["properties"] == ranked["properties"] and len(ranked["properties"]) == 3
        assert destination["property_scores"] == pytest.approx(ranked["scores"], rel=1e-5)


def test_a_slow_ranking_leaves_properties_out_within_the_deadline(serve_cluster, both_models_store):
    deploy(serve_cluster, trips_config(serve_cluster, both_models_store, accommodations_timeout_ms=1))
    body = answered(serve_cluster, lambda r: r.status_code == 200 and r.json()["properties_omitted"],
                    "trips without properties").json()
    assert body["properties_omitted"] is True and "deadline" in body["omitted_reason"]
    assert len(body["destinations"]) == 4 and all(d["properties"] is None for d in body["destinations"])
    assert set(body["model_versions"]) == {"destinations"}
    # Each late call is cancelled; what the cancelled call ends with is taken, not logged as never retrieved.
    for _ in range(5):
        assert trip(serve_cluster).json()["properties_omitted"] is True
    logs = [log.read_text(errors="replace") for log in sorted(serve_cluster.logs.glob("worker-*.err"))]
    assert not [text for text in logs if "trips_Trips" in text and "exception was never retrieved" in text]


def test_without_the_ranking_app_the_destinations_are_still_answered(serve_cluster, both_models_store):
    deploy(serve_cluster, trips_config(serve_cluster, both_models_store, ("destinations", "trips")))
    body = answered(serve_cluster, lambda r: r.status_code == 200 and r.json()["properties_omitted"],
                    "trips without properties").json()
    assert body["properties_omitted"] is True and "accommodation ranking unavailable" in body["omitted_reason"]
    assert len(body["destinations"]) == 4


def test_without_the_destination_app_the_answer_is_503_with_retry_after(serve_cluster, both_models_store):
    deploy(serve_cluster, trips_config(serve_cluster, both_models_store, ("accommodations", "trips")))
    answer = answered(serve_cluster, lambda r: r.status_code != 200, "trips to fail", attempts=1)  # the 503 is the subject
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert "destination model unavailable" in answer.json()["detail"]


def test_a_hot_swap_of_one_model_leaves_the_other_alone(serve_cluster, both_models_store, all_three):
    before = httpx.get(f"{base(serve_cluster)}/destinations/model", timeout=10).json()
    serve_deploy(serve_cluster, trips_config(serve_cluster, both_models_store,
                                             accommodations_version=both_models_store.accommodations_again))
    wait_for(lambda: served_version(serve_cluster, "accommodations") == both_models_store.accommodations_again,
             timeout=120, what="the ranking model to swap")
    after = httpx.get(f"{base(serve_cluster)}/destinations/model", timeout=10).json()
    assert (after["replica"], after["version"], after["loaded_at"]) == \
        (before["replica"], before["version"], before["loaded_at"])
    assert trip(serve_cluster).json()["model_versions"]["accommodations"] == both_models_store.accommodations_again


@pytest.mark.parametrize(("change", "field"), [
    ({"cities": []}, "cities"), ({"nights": 0}, "nights"), ({"properties_per_city": 0}, "properties_per_city"),
    ({"checkin": "2026-13-01"}, "checkin"), ({"k": True}, "k")])
def test_bad_input_is_422_naming_the_field(serve_cluster, all_three, change, field):
    answer = trip(serve_cluster, {**TRIP, **change})
    assert answer.status_code == 422
    assert any(field in map(str, problem["loc"]) for problem in answer.json()["detail"]), answer.json()


def test_the_documented_example_is_answered_and_schemathesis_finds_no_failure(serve_cluster, all_three, tmp_path):
    openapi = httpx.get(f"{base(serve_cluster)}/trips/openapi.json", timeout=10).json()
    example = openapi["components"]["schemas"]["TripRequest"]["examples"][0]
    assert trip(serve_cluster, example).status_code == 200
    report = tmp_path / "junit.xml"
    result = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run",
                             f"{base(serve_cluster)}/trips/openapi.json", "--url", f"{base(serve_cluster)}/trips",
                             "--seed", "7", "--max-examples", "100", "--report", "junit", "--report-junit-path",
                             str(report)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-8000:]
    assert 'failures="0"' in report.read_text() and 'errors="0"' in report.read_text()
