"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from recsys.synthetic_trips import TripsSpec

ROOT = Path(__file__).resolve().parent.parent
SMOKE_CONFIG = ROOT / "configs" / "train" / "smoke.yaml"
SMOKE_TRIPS = TripsSpec(trips=20_000, seed=7)  # what `make bootstrap` generates


def run_cli(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 1200) \
        -> subprocess.CompletedProcess:
    """Run ``python -m module args`` the way a user would, from the repository root."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


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
