"""The accommodations app on a real Serve (HAProxy ingress), deployed from the real config, called over HTTP: its
answers are the SavedModel's own ranking; unknown ids are answered; bad input is 422 naming the field."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

from recsys.accommodations.catalogue import CATALOGUE_FILE, Catalogue
from recsys.accommodations.runtime import Ranker, Searches
from recsys.artifact_store import ModelStore
from recsys.manifest import SAVED_MODEL_DIR
from tests.serving import local_config, point_at, post, serve_deploy, wait_for

pytestmark = pytest.mark.usefixtures("serve_cluster")
CHECKIN = dt.date(2026, 12, 18)  # a Friday
ARROW = "application/vnd.apache.arrow.stream"


def url(cluster) -> str:
    return f"http://127.0.0.1:{cluster.http_port}/accommodations"


@pytest.fixture(scope="module")
def served(serve_cluster, both_models_store, tmp_path_factory) -> dict:
    """The accommodations app serving the session's ranking model; its catalogue and SavedModel for reference."""
    config = local_config(serve_cluster, ["accommodations"])
    point_at(config, "accommodations", f"{both_models_store.uri}/accommodations", both_models_store.accommodations,
             serve_cluster)
    serve_deploy(serve_cluster, config)
    wait_for(lambda: httpx.get(f"{url(serve_cluster)}/model", timeout=10).status_code == 200, timeout=180,
             what="the ranking model to load")
    local = ModelStore(both_models_store.uri).fetch("accommodations", both_models_store.accommodations,
                                                    tmp_path_factory.mktemp("ranking-cache"))
    return {"catalogue": Catalogue.read(local.path / CATALOGUE_FILE),
            "ranker": Ranker(local.path / SAVED_MODEL_DIR), "version": both_models_store.accommodations}


def search(catalogue: Catalogue, i: int, **changes) -> dict:
    cities = np.unique(catalogue.city_id)
    body = {"city_id": int(cities[i % len(cities)]), "booker_country": ["Elbonia", "Atlantis"][i % 2],
            "device_class": ["mobile", "desktop", "tablet"][i % 3], "checkin": str(CHECKIN + dt.timedelta(days=i)),
            "nights": 1 + i % 6, "adults": 1 + i % 3, "children": i % 2, "rooms": 1, "k": 1 + i % 12}
    return {**body, **changes}


def own_ranking(ranker: Ranker, body: dict, candidates: np.ndarray, prices: np.ndarray) -> tuple[list, list]:
    ids, scores = ranker.rank(Searches.from_rows([body]).context(), candidates[None, :], prices[None, :], body["k"])
    n = min(body["k"], len(candidates))
    return ids[0][:n].tolist(), scores[0][:n].tolist()


def test_without_candidates_the_citys_catalogue_is_ranked_as_the_saved_model_ranks_it(serve_cluster, served):
    catalogue = served["catalogue"]
    for i in range(12):
        body = search(catalogue, i)
        answer = post(f"{url(serve_cluster)}/rank", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        candidates = catalogue.of_city(body["city_id"])
        ids, scores = own_ranking(served["ranker"], body, candidates, np.zeros(len(candidates), np.float32))
        assert answer.json()["properties"] == ids
        np.testing.assert_allclose(answer.json()["scores"], scores, rtol=1e-4, atol=1e-6)
        assert set(ids) <= set(candidates.tolist()) and answer.json()["model_version"] == served["version"]


def test_arrow_bodies_get_the_json_answers(serve_cluster, served):
    """Searches as an Arrow stream (dates as text and as date32, candidates as a list of structs with a repeated
    property and null prices) are ranked as the same searches in JSON."""
    catalogue = served["catalogue"]
    bodies = [search(catalogue, i) for i in range(20)]
    bodies[0]["k"] = 10
    known = [int(p) for p in catalogue.of_city(bodies[0]["city_id"])[:3]]
    bodies[0]["candidates"] = [{"property_id": known[0], "price": 99.0}, {"property_id": known[1], "price": None},
                               {"property_id": known[0], "price": 10.0}, {"property_id": 987_654_321, "price": None}]
    expected = post(f"{url(serve_cluster)}/rank/batch", json={"requests": bodies}, timeout=60)
    assert expected.status_code == 200, expected.text
    table = pa.Table.from_pylist(bodies)
    for checkin in (table["checkin"], table["checkin"].cast(pa.date32())):
        body = pa.BufferOutputStream()
        with pa.ipc.new_stream(body, table.schema.set(3, pa.field("checkin", checkin.type))) as writer:
            writer.write_table(table.set_column(3, "checkin", checkin))
        arrow = post(f"{url(serve_cluster)}/rank/batch", content=body.getvalue().to_pybytes(), timeout=60,
                     headers={"content-type": ARROW, "accept": ARROW})
        assert arrow.status_code == 200, arrow.text
        assert pa.ipc.open_stream(arrow.content).read_all().to_pylist() == expected.json()["results"]
    assert sorted(expected.json()["results"][0]["properties"]) == sorted([known[0], known[1], 987_654_321])


def test_candidates_with_todays_prices_and_unknown_ids_are_ranked(serve_cluster, served):
    catalogue = served["catalogue"]
    body = search(catalogue, 3, k=6)
    known = catalogue.of_city(body["city_id"])[:5]
    candidates = [{"property_id": int(p), "price": 80.0 + 10 * i} for i, p in enumerate(known)]
    candidates += [{"property_id": 987_654_321}, {"property_id": int(known[0]) + 10**12, "price": 55.5}]
    answer = post(f"{url(serve_cluster)}/rank", json={**body, "candidates": candidates}, timeout=30)
    assert answer.status_code == 200, answer.text
    ids = np.array([c["property_id"] for c in candidates], dtype=np.int64)
    prices = np.array([c.get("price", 0.0) for c in candidates], dtype=np.float32)
    expected_ids, expected_scores = own_ranking(served["ranker"], body, ids, prices)
    assert answer.json()["properties"] == expected_ids and len(expected_ids) == 6
    np.testing.assert_allclose(answer.json()["scores"], expected_scores, rtol=1e-4, atol=1e-6)
    cheaper = post(f"{url(serve_cluster)}/rank", json={**body, "candidates": [
        {**c, "price": 1.0} if c["property_id"] == expected_ids[-1] else c for c in candidates]}, timeout=30)
    assert cheaper.json()["scores"] != answer.json()["scores"]  # today's price counts


def test_a_property_listed_twice_is_ranked_once_at_its_first_price(serve_cluster, served):
    body = search(served["catalogue"], 4, k=10)
    known = [int(p) for p in served["catalogue"].of_city(body["city_id"])[:3]]
    once = [{"property_id": known[0], "price": 90.0}, {"property_id": known[1]}, {"property_id": known[2]}]
    twice = [*once, {"property_id": known[0], "price": 1.0}]
    answers = [post(f"{url(serve_cluster)}/rank", json={**body, "candidates": c}, timeout=30).json()
               for c in (once, twice)]
    assert answers[0] == answers[1] and sorted(answers[1]["properties"]) == sorted(known)


def test_an_unknown_city_without_candidates_gets_an_empty_ranking(serve_cluster, served):
    answer = post(f"{url(serve_cluster)}/rank", json=search(served["catalogue"], 1, city_id=99_999_999),
                  timeout=30)
    assert answer.status_code == 200 and answer.json()["properties"] == [] and answer.json()["scores"] == []


def test_the_batch_endpoint_answers_in_order(serve_cluster, served):
    bodies = [search(served["catalogue"], i) for i in range(100)]  # > max_batch_size 64: two model calls
    batch = post(f"{url(serve_cluster)}/rank/batch", json={"requests": bodies}, timeout=60)
    assert batch.status_code == 200, batch.text
    singles = [post(f"{url(serve_cluster)}/rank", json=body, timeout=30).json() for body in bodies[:10]]
    assert [r["properties"] for r in batch.json()["results"][:10]] == [s["properties"] for s in singles]
    assert len(batch.json()["results"]) == 100


@pytest.mark.parametrize(("change", "field"), [
    ({"candidates": [{"property_id": 0}]}, "property_id"),
    ({"candidates": [{"property_id": 5, "price": -3}]}, "price"),
    ({"candidates": [{"property_id": i} for i in range(1, 502)]}, "candidates"),
    ({"candidates": []}, "candidates"),
    ({"nights": 0}, "nights"),
    ({"adults": True}, "adults"),
    ({"checkin": "next friday"}, "checkin"),
    ({"city_id": 2**64}, "city_id"),
    ({"k": 101}, "k"),
    ({"booker_country": "\ud800"}, "booker_country"),
    ({"surprise": 1}, "surprise"),
    ({"checkin": 0}, "checkin"),
], ids=["property-0", "negative-price", "501-candidates", "no-candidates", "no-nights",
        "boolean-adults", "not-a-date", "huge-city", "k-too-large", "lone-surrogate", "unknown-field",
        "checkin-number"])
def test_bad_input_is_422_naming_the_field_and_harms_no_one_else(serve_cluster, served, change, field):
    good = search(served["catalogue"], 2)

    def send(path: str, body: dict) -> httpx.Response:
        # json.dumps escapes a lone surrogate as \ud800, as a careless client would send it.
        return post(f"{url(serve_cluster)}{path}", content=json.dumps(body), timeout=30,
                    headers={"content-type": "application/json"})

    answer = send("/rank", {**good, **change})
    assert answer.status_code == 422, answer.text
    assert any(field in map(str, problem["loc"]) for problem in answer.json()["detail"]), answer.json()
    batch = send("/rank/batch", {"requests": [good, {**good, **change}]})
    assert batch.status_code == 422
    assert post(f"{url(serve_cluster)}/rank", json=good, timeout=30).status_code == 200


def test_the_model_endpoint_and_the_documented_api(serve_cluster, served):
    status = httpx.get(f"{url(serve_cluster)}/model", timeout=10).json()
    assert status["model_uri"].endswith("/accommodations") and status["version"] == served["version"]
    assert status["manifest"]["metrics"]["ndcg_at_10"] > 0 and status["max_batch_size"] == 64
    openapi = httpx.get(f"{url(serve_cluster)}/openapi.json", timeout=10).json()
    assert {"/rank", "/rank/batch", "/model"} <= set(openapi["paths"])
    example = openapi["components"]["schemas"]["RankRequest"]["examples"][0]
    assert post(f"{url(serve_cluster)}/rank", json=example, timeout=30).status_code == 200


def test_schemathesis_finds_no_failure_of_its_default_checks(serve_cluster, served, tmp_path):
    report = tmp_path / "junit.xml"
    result = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run",
                             f"{url(serve_cluster)}/openapi.json", "--url", url(serve_cluster), "--seed", "7",
                             "--max-examples", "150", "--report", "junit", "--report-junit-path", str(report)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-8000:]
    assert 'failures="0"' in report.read_text() and 'errors="0"' in report.read_text()
