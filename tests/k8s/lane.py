"""What the end to end through the operator needs besides the control plane: an environment like dev whose model
store, training data and code archive are local to this machine, and a real Ray head inside the lane's network
namespace, which answers for every (KWOK) Ray pod of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from cluster.environments import ENVIRONMENTS
from tests.k8s.control_plane import ControlPlane
from tests.support import ROOT

ARCHIVE_HOST, ARCHIVE_PORT = "10.244.0.254", 8443  # an address of the pod range, so local in the namespace


def lane_environment(path: Path, store_uri: str, data_uri: str, cache_dir: Path) -> Path:
    """dev's environment, renamed, with the local model store, smoke training and the lane's archive server."""
    env = yaml.safe_load((ENVIRONMENTS / "dev.yaml").read_text())
    env.update(name="destinations-lane", namespace="travel-recsys-lane", ray_auth_secret="destinations-lane-ray-auth")
    serving = env["serving"]
    for index, model in enumerate(("destinations", "accommodations")):
        serving["set"][f"applications.{index}.args.cache_dir"] = str(cache_dir)
        serving["set"][f"applications.{index}.deployments.0.user_config.model_uri"] = f"{store_uri}/{model}"
    training = env["training"]
    training["jobs"] = {"destinations": {"config": "configs/train/smoke.yaml", "data_uri": data_uri}}
    training.update(code_archive=f"https://{ARCHIVE_HOST}:{ARCHIVE_PORT}/travel-recsys/archive/{{commit}}.zip",
                    store_uri=store_uri, checkpoint_uri=str(path.parent / "checkpoints"),
                    submission_mode="HTTPMode")
    path.write_text(yaml.safe_dump(env, sort_keys=False))
    return path


def publish_archive(directory: Path, commit: str) -> None:
    """``git archive`` of ``commit`` laid out like the git host's archive URL (one top-level directory)."""
    out = directory / "travel-recsys" / "archive" / f"{commit}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "archive", "--format=zip", f"--prefix=travel-recsys-{commit}/", "-o", str(out), commit],
                   cwd=ROOT, check=True, timeout=120)


def start_archive_server(plane: ControlPlane, directory: Path) -> subprocess.Popen:
    cert, key = plane.pki.serving("archive", [ARCHIVE_HOST], [])
    return plane.spawn("archive-server", [sys.executable, "-m", "tests.k8s.archive_server", str(directory),
                                          str(cert), str(key), ARCHIVE_HOST, str(ARCHIVE_PORT)], cwd=ROOT)


def start_ray_head(plane: ControlPlane, temp_dir: Path, auth_token: str, num_cpus: int = 4) -> subprocess.Popen:
    """``ray start --head`` inside the namespace: dashboard (8265) and, once Serve runs, the Serve proxy (8000) on
    every address of it, so on every pod IP; token auth with the RayService's Secret, as the operator calls it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=auth_token, TF_USE_LEGACY_KERAS="1",
               PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
               # The training job's code archive comes from the lane's archive server.
               REQUESTS_CA_BUNDLE=str(plane.pki.ca), RAY_USAGE_STATS_ENABLED="0")
    return plane.spawn("ray-head", [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                                    f"--num-cpus={num_cpus}", "--node-ip-address=127.0.0.1",
                                    "--dashboard-host=0.0.0.0", f"--temp-dir={temp_dir}"], env=env, cwd=ROOT)
