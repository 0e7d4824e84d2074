from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from serve_apps.local import MAX_RUN_DIR_LENGTH, WRAPPER, example_request, haproxy_environment
from tests.support import ROOT


def test_haproxy_environment_keeps_state_private_and_uses_the_loopback_wrapper(short_tmp):
    environment = haproxy_environment(short_tmp / "run", stats_port=18404, metrics_port=19101)
    assert environment["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert environment["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(WRAPPER)
    assert Path(environment["RECSYS_HAPROXY_BINARY"]).is_file()
    assert environment["RAY_SERVE_HAPROXY_SOCKET_PATH"] == str(short_tmp / "run" / "admin.sock")
    assert (environment["RAY_SERVE_HAPROXY_STATS_PORT"], environment["RAY_SERVE_HAPROXY_METRICS_PORT"]) == \
        ("18404", "19101")
    assert (short_tmp / "run").is_dir()


def test_a_run_dir_too_long_for_haproxys_socket_path_is_refused_up_front(tmp_path):
    long = tmp_path / ("x" * MAX_RUN_DIR_LENGTH)
    with pytest.raises(ValueError, match=r"HAProxy run dir .* characters long.*--run-dir"):
        haproxy_environment(long)
    assert not long.exists()


def test_the_wrapper_moves_all_interface_binds_to_loopback(tmp_path):
    import subprocess

    config = tmp_path / "haproxy.cfg"
    config.write_text("frontend prometheus\n    bind :9101\nfrontend http\n    bind 127.0.0.1:8000\n"
                      "listen stats\n  bind *:8404\n")
    result = subprocess.run([str(WRAPPER), "-db", "-f", str(config)], capture_output=True, text=True,
                            env={"RECSYS_HAPROXY_BINARY": "/bin/echo", "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == f"-db -f {config}"
    assert config.read_text().count("bind 127.0.0.1:") == 3


def test_example_request_uses_values_the_model_knows(trained_model):
    config = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
    config["applications"][0]["deployments"][0]["user_config"]["model_uri"] = \
        f"{trained_model.store_uri}/{trained_model.name}"
    command = example_request(config)
    body = json.loads(command.split("-d '", 1)[1].rstrip("'"))
    assert command.startswith("curl -s http://127.0.0.1:8000/destinations/recommend ")
    assert len(body["cities"]) == 3 and body["booker_country"] != "Elbonia"


def test_example_request_without_a_model_still_gives_a_valid_request(tmp_path):
    config = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
    config["applications"][0]["deployments"][0]["user_config"]["model_uri"] = str(tmp_path / "destinations")
    body = json.loads(example_request(config).split("-d '", 1)[1].rstrip("'"))
    assert body["cities"] and body["device_class"] == "mobile"
