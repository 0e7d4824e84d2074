"""The HAProxy-mode environment and the queue limits, both derived from a Serve config file."""

from __future__ import annotations

import json

import pytest
import yaml

from serve_apps.core.ingress import MAX_RUN_DIR_LENGTH, WRAPPER, haproxy_environment, haproxy_limits
from tests.support import ROOT

LOCAL = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
PRODUCTION = yaml.safe_load((ROOT / "configs" / "serve" / "production.yaml").read_text())


@pytest.mark.parametrize(("config", "expected"), [
    (LOCAL, {"destinations": {"maxconn": 32, "queue_ms": 100, "maxqueue": 32, "target_ms": 25, "held": 16},
             "accommodations": {"maxconn": 32, "queue_ms": 100, "maxqueue": 32, "target_ms": 25, "held": 16},
             "trips": {"maxconn": 32, "queue_ms": 100, "maxqueue": 32, "target_ms": 0, "held": 16}}),
    (PRODUCTION, {"destinations": {"maxconn": 64, "queue_ms": 100, "maxqueue": 64, "target_ms": 25, "held": 32},
                  "accommodations": {"maxconn": 32, "queue_ms": 100, "maxqueue": 32, "target_ms": 25, "held": 16},
                  "trips": {"maxconn": 64, "queue_ms": 100, "maxqueue": 64, "target_ms": 0, "held": 32}}),
], ids=["local", "production"])
def test_limits_come_from_the_ingress_deployment_and_the_app_args(config, expected):
    assert haproxy_limits(config) == expected


def test_an_app_without_limits_gets_none_but_the_default_budget_and_target():
    config = {"applications": [{"name": "echo", "import_path": "x:y", "deployments": [{"name": "Echo"}]}]}
    assert haproxy_limits(config) == {"echo": {"maxconn": 0, "queue_ms": 100, "maxqueue": 0, "target_ms": 25,
                                               "held": 0}}


def test_the_environment_keeps_state_private_and_runs_haproxy_through_the_wrapper(short_tmp):
    environment = haproxy_environment(LOCAL, short_tmp / "run", stats_port=18404, metrics_port=19101,
                                      haproxy_binary="/opt/haproxy")
    assert environment["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert environment["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(WRAPPER)
    assert environment["RECSYS_HAPROXY_BINARY"] == "/opt/haproxy"
    assert json.loads(environment["RECSYS_HAPROXY_LIMITS"]) == haproxy_limits(LOCAL)
    assert environment["RECSYS_HAPROXY_LOOPBACK"] == "1"
    assert environment["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    for variable in ("SOCKET_PATH", "CONFIG_FILE_LOC", "SERVER_STATE_FILE", "METRICS_SOCKET_PATH"):
        assert environment[f"RAY_SERVE_HAPROXY_{variable}"].startswith(str(short_tmp / "run") + "/")
    assert (environment["RAY_SERVE_HAPROXY_STATS_PORT"], environment["RAY_SERVE_HAPROXY_METRICS_PORT"]) == \
        ("18404", "19101")
    assert 1 <= int(environment["RAY_SERVE_HAPROXY_NBTHREAD"]) <= 4
    assert (short_tmp / "run").is_dir()


def test_a_cluster_environment_leaves_paths_and_binary_to_the_image():
    environment = haproxy_environment(PRODUCTION, loopback=False)
    assert environment["RECSYS_HAPROXY_LOOPBACK"] == "0"
    assert not any(key in environment for key in ("RECSYS_HAPROXY_BINARY", "RAY_SERVE_HAPROXY_SOCKET_PATH",
                                                  "RAY_SERVE_HAPROXY_NBTHREAD"))


def test_a_run_dir_too_long_for_haproxys_socket_path_is_refused_up_front(tmp_path):
    long = tmp_path / ("x" * MAX_RUN_DIR_LENGTH)
    with pytest.raises(ValueError, match=r"HAProxy run dir .* characters long.*--run-dir"):
        haproxy_environment(LOCAL, long)
    assert not long.exists()
