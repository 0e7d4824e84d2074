from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

from recsys.artifact_store import ModelStore
from recsys.manifest import VOCABULARY_FILE
from serve_apps.local import example_requests
from tests.serving import free_port, wait_for
from tests.support import ROOT


def _bodies(commands: dict[str, str]) -> dict[str, dict]:
    return {name: json.loads(command.split("-d '", 1)[1].rstrip("'")) for name, command in commands.items()}


def _local_config(models: dict[str, str]) -> dict:
    config = yaml.safe_load((ROOT / "configs" / "serve" / "local.yaml").read_text())
    for application in config["applications"]:
        if application["name"] in models:
            application["deployments"][0]["user_config"]["model_uri"] = models[application["name"]]
    return config


def test_example_requests_use_values_the_models_know(trained_model, trained_accommodations):
    commands = example_requests(_local_config({
        "destinations": f"{trained_model.store_uri}/{trained_model.name}",
        "accommodations": f"{trained_accommodations.store_uri}/{trained_accommodations.name}"}))
    assert commands["destinations"].startswith("curl -s http://127.0.0.1:8000/destinations/recommend ")
    assert commands["accommodations"].startswith("curl -s http://127.0.0.1:8000/accommodations/rank ")
    assert commands["trips"].startswith("curl -s http://127.0.0.1:8000/trips/recommend ")
    bodies = _bodies(commands)
    assert len(bodies["destinations"]["cities"]) == 3 and bodies["destinations"]["booker_country"] != "Elbonia"
    assert bodies["trips"]["cities"] == bodies["destinations"]["cities"]
    vocabulary = json.loads(ModelStore(trained_accommodations.store_uri).read_file(
        "accommodations", trained_accommodations.version, VOCABULARY_FILE))
    assert bodies["accommodations"]["city_id"] == vocabulary["cities"][0] and bodies["accommodations"]["nights"] == 2


def test_example_requests_without_models_still_give_valid_requests(tmp_path):
    bodies = _bodies(example_requests(_local_config({"destinations": str(tmp_path / "destinations"),
                                                     "accommodations": str(tmp_path / "accommodations")})))
    assert bodies["destinations"]["cities"] and bodies["destinations"]["device_class"] == "mobile"
    assert bodies["accommodations"]["city_id"] == 8183 and bodies["trips"]["checkin"]


def test_sigterm_shuts_serving_down_and_frees_its_ports(trained_model, tmp_path):
    """`make run` serves Ray's metrics, the model's among them, on the port it was given; stopped by SIGTERM (a
    supervisor, a closed terminal) it leaves nothing listening: not HAProxy, not Ray. Also when started in the
    background (`make run &`), where SIGINT, which stops `serve run`, is ignored."""
    config = _local_config({"destinations": f"{trained_model.store_uri}/{trained_model.name}"})
    config["applications"] = [a for a in config["applications"] if a["name"] == "destinations"]
    port, stats, metrics, fallback, ray_metrics = free_port(), free_port(), free_port(), free_port(), free_port()
    config["http_options"]["port"] = port
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    # Started as from a shell: without the variables this process's own Ray and Serve set (RAY_ADDRESS would join
    # the session's Ray; with the session's other Ray variables the HAProxy wrapper never came up), with a Ray temp
    # directory of its own, and ports of its own next to the session's Serve (HAProxy's stats and metrics, the
    # Python proxy HAProxy falls back to).
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("RAY_", "RECSYS_"))}
    log = tmp_path / "launcher.log"
    run_dir = Path(tempfile.mkdtemp(prefix="rsl-", dir="/tmp"))  # HAProxy's socket path must stay short
    ray_tmp = Path(tempfile.mkdtemp(prefix="rsr-", dir="/tmp"))  # so must Ray's
    with open(log, "wb") as output:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "serve_apps.local", str(path), "--run-dir", str(run_dir), "--metrics-port",
             str(ray_metrics)],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as a shell starts a job with `&`
            env={**environment, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # loopback only, as the Makefile runs it
                 "RAY_TMPDIR": str(ray_tmp), "RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
                 "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics), "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(fallback)})

    def serving() -> bool:
        assert launcher.poll() is None, f"the launcher exited: {log.read_text()[-3000:]}"
        return httpx.get(f"http://127.0.0.1:{port}/destinations/model", timeout=5).status_code == 200

    def model_metrics() -> bool:
        text = httpx.get(f"http://127.0.0.1:{ray_metrics}/metrics", timeout=5).text
        return f'version="{trained_model.version}"' in text and "ray_recsys_model_info{" in text

    try:
        wait_for(serving, timeout=300, what="the launcher's Serve to answer")
        wait_for(model_metrics, timeout=60, what="the model's metrics on the metrics port")
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=180)  # TimeoutExpired if `serve run` did not stop
    finally:
        if launcher.poll() is None:
            launcher.kill()
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    for listener in (port, stats, fallback, ray_metrics):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", listener)) != 0, f"port {listener} still listening"
