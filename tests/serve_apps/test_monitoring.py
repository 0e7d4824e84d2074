"""The serving core's metrics as a real Prometheus sees them: the session's Serve (HAProxy ingress) scraped on Ray's
metrics port and HAProxy's exporter every second, with the alert rules of configs/monitoring loaded; known traffic
in (good, bad and shed requests), exact series out, through Prometheus' query API. And a hot swap to a deliberately
different model: its response shift is reported and, with a limit set, the version is refused."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from recsys.artifact_store import ModelStore
from tests.prometheus import Prometheus
from tests.serving import local_config, model_status, point_at, requests_from, serve_deploy, wait_for
from tests.support import ROOT

pytestmark = [pytest.mark.prometheus, pytest.mark.usefixtures("serve_cluster")]

MONITORING = ROOT / "configs" / "monitoring"
UNKNOWN_CITY = 99_999_999  # requests_from appends it to every 7th trip


@pytest.fixture(scope="module")
def prometheus(serve_cluster, tmp_path_factory) -> Prometheus:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"),
                        {"ray": [f"127.0.0.1:{serve_cluster.metrics_port}"],
                         "haproxy": [f"127.0.0.1:{serve_cluster.haproxy_metrics_port}"]},
                        [MONITORING / "alerts.yaml"])
    yield server
    server.close()


def deploy_both(cluster, serving_store, both_models_store, destinations_version: str, destinations_args=None,
                **destinations_config) -> dict:
    """Both model applications, each on one replica; returns the destination replica's status once it serves
    ``destinations_version`` with these settings."""
    config = local_config(cluster, ["destinations", "accommodations"])
    point_at(config, "destinations", f"{serving_store.uri}/destinations", destinations_version, cluster,
             destinations_args, **destinations_config)
    point_at(config, "accommodations", f"{both_models_store.uri}/accommodations", both_models_store.accommodations,
             cluster)
    serve_deploy(cluster, config)
    base = f"http://127.0.0.1:{cluster.http_port}"
    wait_for(lambda: httpx.get(f"{base}/accommodations/model", timeout=10).status_code == 200, timeout=180,
             what="the ranking model")
    # The replica reports its own settings; the in-flight target is HAProxy's.
    args = {key: value for key, value in (destinations_args or {}).items() if key != "inflight_target_ms"}
    wanted = {**args, **destinations_config}
    return wait_for(lambda: (s := model_status(cluster)) and s["version"] == destinations_version
                    and all(s.get(key) == value for key, value in wanted.items()) and s,
                    timeout=180, what=f"destinations version {destinations_version}")


def series(app: str, replica: str, **labels: str) -> str:
    return ",".join([f'application="{app}"', f'replica="{replica}"', *(f'{k}="{v}"' for k, v in labels.items())])


def test_known_traffic_gives_exact_series_for_every_model(serve_cluster, serving_store, both_models_store,
                                                          prometheus):
    status = deploy_both(serve_cluster, serving_store, both_models_store, serving_store.good,
                         destinations_args={"queue_budget_ms": 30_000})
    replica, base = status["replica"], f"http://127.0.0.1:{serve_cluster.http_port}"
    ranking = httpx.get(f"{base}/accommodations/model", timeout=10).json()
    singles = requests_from(serving_store.vocabulary(), 30)
    batch = requests_from(serving_store.vocabulary(), 10, seed=1)
    with httpx.Client(base_url=base, timeout=30) as client:
        for body in singles:
            assert client.post("/destinations/recommend", json=body).status_code == 200
            time.sleep(0.02)  # under INSPECTED_PER_SECOND rows a second, so that every row is inspected
        assert client.post("/destinations/recommend/batch", json={"requests": batch}).status_code == 200
        for _ in range(3):
            assert client.post("/destinations/recommend", json={**singles[0], "cities": []}).status_code == 422
        assert client.post("/destinations/recommend", content=b"{not json",
                           headers={"content-type": "application/json"}).status_code == 400
        assert client.post("/destinations/recommend", content=b"x",
                           headers={"content-type": "text/plain"}).status_code == 415
        search = {"city_id": 8183, "booker_country": "Elbonia", "device_class": "mobile", "checkin": "2026-12-18",
                  "nights": 2}
        for _ in range(5):
            assert client.post("/accommodations/rank", json=search).status_code == 200
        assert client.post("/accommodations/rank", json={**search, "nights": 0}).status_code == 422

    rows = singles + batch
    d = lambda **labels: series("destinations", replica, **labels)  # noqa: E731
    a = lambda **labels: series("accommodations", ranking["replica"], **labels)  # noqa: E731
    expected = {
        f'ray_recsys_request_seconds_count{{{d(route="/recommend", code="200")}}}': 30,
        f'ray_recsys_request_seconds_count{{{d(route="/recommend/batch", code="200")}}}': 1,
        f'ray_recsys_request_seconds_count{{{d(route="/recommend", code="422")}}}': 3,
        f'ray_recsys_request_seconds_count{{{d(route="/recommend", code="400")}}}': 1,
        f'ray_recsys_request_seconds_count{{{d(route="/recommend", code="415")}}}': 1,
        f'ray_recsys_requests_refused_total{{{d(code="422", reason="invalid_body")}}}': 3,
        f'ray_recsys_requests_refused_total{{{d(code="400", reason="malformed_body")}}}': 1,
        f'ray_recsys_requests_refused_total{{{d(code="415", reason="unsupported_media_type")}}}': 1,
        f'ray_recsys_model_info{{{d(version=serving_store.good)}}}': 1,
        f'ray_recsys_model_behind_target{{{d()}}}': 0,
        f'ray_recsys_answers_total{{{d(version=serving_store.good)}}}': 40,
        f'ray_recsys_answer_top1_score_count{{{d(version=serving_store.good)}}}': 40,
        f'ray_recsys_feature_rows_total{{{d(feature="cities")}}}': 40,
        f'ray_recsys_feature_unknown_total{{{d(feature="cities")}}}': sum(UNKNOWN_CITY in r["cities"] for r in rows),
        f'ray_recsys_feature_unknown_total{{{d(feature="booker_country")}}}':
            sum(r["booker_country"] == "Atlantis" for r in rows),
        f'ray_recsys_model_call_rows_bucket{{{d(le="+Inf")}}}': 31,
        f'ray_recsys_model_info{{{a(version=ranking["version"])}}}': 1,
        f'ray_recsys_request_seconds_count{{{a(route="/rank", code="200")}}}': 5,
        f'ray_recsys_request_seconds_count{{{a(route="/rank", code="422")}}}': 1,
    }
    for expr, value in expected.items():
        prometheus.wait_for_value(expr, value)
    # Histograms hold every observation: the batch's 10 rows were one model call of 10 rows. Traffic this light has
    # every row inspected (serve_apps/core/metrics.py), so the counts of inspected rows above are exact too.
    assert prometheus.value(f'ray_recsys_model_call_rows_bucket{{{d(le="8.0")}}}') == 30
    assert prometheus.value(f'ray_recsys_model_call_seconds_count{{{d()}}}') == 31
    assert prometheus.value(f'sum(ray_recsys_request_seconds_count{{{d(route="/recommend")}}})') == 35
    popular = prometheus.value(f'ray_recsys_answers_popular_total{{{d(version=serving_store.good)}}}') or 0
    assert 0 <= popular <= 40


def test_shed_requests_are_counted_as_the_clients_saw_them(serve_cluster, serving_store, both_models_store,
                                                           prometheus):
    """A 5 ms queueing budget and 16 batch requests of 1,024 rows at once: each 503 a client got is one in HAProxy's
    exporter, which counts every answer of the ingress (its own refusals too: IngressShedding), and each 503 the
    replica answered is one in the replica's metrics. HAProxy's limits are the session's (adaptive, set when Ray
    started): once the replica sheds, the controller may lower its limit and let some of the rest time out in
    HAProxy's queue, so not every 503 need be the replica's."""
    status = deploy_both(serve_cluster, serving_store, both_models_store, serving_store.good,
                         destinations_args={"queue_budget_ms": 5, "inflight_target_ms": 0})
    body = {"requests": requests_from(serving_store.vocabulary(), 1024, seed=2)}
    before = wait_for(lambda: ingress_5xx(serve_cluster), what="HAProxy to route to the new replica only")
    with httpx.Client(base_url=f"http://127.0.0.1:{serve_cluster.http_port}", timeout=60) as client:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: client.post("/destinations/recommend/batch", json=body).status_code,
                                  range(16)))
    assert set(codes) <= {200, 503} and 503 in codes, codes
    after = ingress_5xx(serve_cluster)
    assert after[:2] == (before[0], before[1] + codes.count(503)), (before, after)
    replicas_503 = after[2] - before[2]
    assert 1 <= replicas_503 <= codes.count(503), (before, after)  # the replica sheds first: that lowers its limit
    prometheus.wait_for_value('haproxy_frontend_http_responses_total{job="haproxy", proxy="http_frontend", '
                              'code="5xx"}', after[1])
    d = lambda **labels: series("destinations", status["replica"], **labels)  # noqa: E731
    prometheus.wait_for_value(f'ray_recsys_request_seconds_count{{{d(route="/recommend/batch", code="503")}}}',
                              replicas_503)
    # The refusals count the batch requests' 503s, and any status poll of the deploy that the 5 ms budget shed.
    refused = f'ray_recsys_requests_refused_total{{{d(code="503", reason="overloaded")}}}'
    wait_for(lambda: (prometheus.value(refused) or 0) >= replicas_503, what=refused)


def test_a_different_model_shows_its_shift_and_is_refused_beyond_the_limit(serve_cluster, serving_store,
                                                                           both_models_store, prometheus, tmp_path):
    """The served model, then an untrained network with the same vocabulary and signature (v2-small): on the same
    recent requests its top-1 scores shift far beyond the limit, so it is refused, counted and alerted on, and the
    trained version keeps serving; the same artifact published again as a new version shows no shift and is
    taken."""
    status = deploy_both(serve_cluster, serving_store, both_models_store, serving_store.good,
                         destinations_args={"queue_budget_ms": 30_000})
    replica, url = status["replica"], f"http://127.0.0.1:{serve_cluster.http_port}/destinations"
    recent = requests_from(serving_store.vocabulary(), 300, seed=3)
    assert httpx.post(f"{url}/recommend/batch", json={"requests": recent}, timeout=60).status_code == 200

    serve_deploy(serve_cluster, swap_config(serve_cluster, serving_store, both_models_store, serving_store.other,
                                            max_response_shift_psi=0.25))
    refused = wait_for(lambda: (s := model_status(serve_cluster)) and s["last_load_error"] and s,
                       timeout=180, what="v2-small to be vetted")
    assert refused["version"] == serving_store.good and refused["replica"] == replica
    assert refused["last_load_error"]["version"] == serving_store.other
    assert refused["last_load_error"]["error"].startswith("ShiftTooLarge: answers the last 300 requests")
    shift = refused["response_shift"]
    assert shift["version"] == serving_store.other and shift["baseline"] == serving_store.good
    assert shift["rows"] == 300 and shift["refused"] and shift["top1_psi"] > 0.25, shift
    d = lambda **labels: series("destinations", replica, **labels)  # noqa: E731
    shifted = d(version=serving_store.other, baseline=serving_store.good)
    wait_for(lambda: (prometheus.value(f"ray_recsys_response_shift_psi{{{shifted}}}") or 0) > 0.25,
             what="the shift metric")
    prometheus.wait_for_value(
        f'ray_recsys_model_load_failures_total{{{d(version=serving_store.other, reason="ShiftTooLarge")}}}', 1)
    prometheus.wait_for_value(f'ray_recsys_model_behind_target{{{d()}}}', 1)
    prometheus.wait_for_value(f'ALERTS{{alertname="ResponseShift",alertstate="firing",application="destinations",'
                              f'version="{serving_store.other}",baseline="{serving_store.good}"}}', 1)

    again = republish(serving_store, tmp_path)
    serve_deploy(serve_cluster, swap_config(serve_cluster, serving_store, both_models_store, again,
                                            max_response_shift_psi=0.25))
    taken = wait_for(lambda: (s := model_status(serve_cluster)) and s["version"] == again and s,
                     timeout=180, what="the republished version to be taken")
    assert taken["replica"] == replica and taken["response_shift"]["version"] == again
    assert taken["response_shift"]["top1_psi"] < 0.01 and taken["response_shift"]["topk_overlap"] > 0.99
    assert not taken["response_shift"]["refused"]
    prometheus.wait_for_value(f'ray_recsys_model_info{{{d(version=again)}}}', 1)
    prometheus.wait_for_value(f'ray_recsys_model_behind_target{{{d()}}}', 0)


def ingress_5xx(cluster) -> tuple[float, float, float] | None:
    """HAProxy's start time, the 5xx answers of its HTTP frontend so far and those of them the destination replica
    gave, read from its exporter; None while it lists another destination replica than one (Ray reloads HAProxy when
    the replicas change, and a reload starts its counters again)."""
    text = httpx.get(f"http://127.0.0.1:{cluster.haproxy_metrics_port}/metrics", timeout=10).text
    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    replicas = {s.labels["server"] for s in samples if s.name == "haproxy_server_status"
                and s.labels["proxy"] == "http-destinations" and s.labels["server"].startswith("SERVE_REPLICA_")}
    if len(replicas) != 1:
        return None
    [server] = replicas
    [started] = [s.value for s in samples if s.name == "haproxy_process_start_time_seconds"]
    [answered] = [s.value for s in samples if s.name == "haproxy_frontend_http_responses_total"
                  and s.labels == {"proxy": "http_frontend", "code": "5xx"}]
    [replica] = [s.value for s in samples if s.name == "haproxy_server_http_responses_total"
                 and s.labels == {"proxy": "http-destinations", "server": server, "code": "5xx"}]
    return started, answered, replica


def swap_config(cluster, serving_store, both_models_store, version: str, **user_config) -> dict:
    """The same applications and args (so the replica stays), the destination model at another version."""
    config = local_config(cluster, ["destinations", "accommodations"])
    point_at(config, "destinations", f"{serving_store.uri}/destinations", version, cluster,
             {"queue_budget_ms": 30_000}, **user_config)
    point_at(config, "accommodations", f"{both_models_store.uri}/accommodations", both_models_store.accommodations,
             cluster)
    return config


def republish(serving_store, tmp_path) -> str:
    store = ModelStore(serving_store.uri)
    fetched = store.fetch("destinations", serving_store.good, tmp_path / "fetch")
    version = f"again-{dt.datetime.now(dt.UTC):%H%M%S%f}"
    store.publish(fetched.path, fetched.manifest.model_copy(update={"version": version,
                                                                    "created_at": dt.datetime.now(dt.UTC)}))
    return version


def test_every_dashboard_query_is_valid_promql_and_the_model_panels_have_data(prometheus):
    """Runs after the traffic above: every target of the dashboard evaluates without error, and those over this
    project's metrics return series, within a few scrapes: a gauge its replica was late to set again can be gone
    from one scrape, and Prometheus marks its series stale until the next (make test once found none for the
    load-seconds panel)."""
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    queries = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert queries
    substitutions = {"$application": "destinations", "$__rate_interval": "1m", "$version": ".*"}
    for title, expr in queries:
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        if "ray_recsys_" in expr and "shift" not in expr and "failures" not in expr:
            wait_for(lambda expr=expr: prometheus.query(expr), timeout=30, what=f"{title}: {expr} to return series")
        else:
            prometheus.query(expr)
