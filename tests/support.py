"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from recsys.accommodations.synthetic_searches import SearchesSpec
from recsys.synthetic_trips import TripsSpec

ROOT = Path(__file__).resolve().parent.parent
SMOKE_CONFIG = ROOT / "configs" / "train" / "smoke.yaml"
ACCOMMODATIONS_SMOKE_CONFIG = ROOT / "configs" / "train" / "accommodations-smoke.yaml"
SMOKE_TRIPS = TripsSpec(trips=20_000, seed=7)  # what `make bootstrap` generates
SMOKE_SEARCHES = SearchesSpec(fraction=0.25, seed=7)


def run_cli(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 1200) \
        -> subprocess.CompletedProcess:
    """Run ``python -m module args`` the way a user would, from the repository root."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def job_config(base: Path, tmp_path: Path, **changes) -> Path:
    """``base`` with its store and checkpoints under ``tmp_path`` and ``changes`` applied, written there."""
    settings = yaml.safe_load(base.read_text())
    settings.update(store_uri=str(tmp_path / "models"), checkpoint_uri=str(tmp_path / "checkpoints"), **changes)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@dataclass(frozen=True)
class TrainedModel:
    """A version the session trained with the real CLI (see the ``trained_model`` fixture)."""

    store_uri: str
    name: str
    version: str
    summary: dict
    stdout: str
    output: str  # stdout and stderr: Ray forwards the workers' epoch lines to the driver's stderr
    data: Path
