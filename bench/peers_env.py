"""Virtual environments for the peer servers, created under bench/.peers on first use.

KServe and BentoML pin web-stack versions (starlette, pydantic, fastapi, uvicorn) that may clash with Ray's, so each
gets its own environment with TensorFlow beside it. A peer that cannot be installed is left out of the run, and the
report says so.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

PEERS = {"kserve": ["kserve==0.21.0"], "bentoml": ["bentoml==1.4.40"]}
COMMON = ["tensorflow==2.21.0", "numpy==2.4.6"]
DIRECTORY = Path(__file__).resolve().parent / ".peers"
log = logging.getLogger("bench.peers")


def ensure_all() -> None:
    for name in PEERS:
        ensure(name)


def ensure(name: str) -> bool:
    venv = DIRECTORY / name
    wanted = "\n".join(COMMON + PEERS[name])
    marker = venv / ".installed"
    if marker.exists() and marker.read_text() == wanted:
        return True
    log.info("installing peer %s into %s (first run only)", name, venv)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True, capture_output=True, timeout=600)
        subprocess.run([*pip, *COMMON, *PEERS[name]], check=True, capture_output=True, timeout=1800)
    except (subprocess.SubprocessError, OSError) as err:
        log.error("peer %s could not be installed, it is left out: %s", name, getattr(err, "stderr", err))
        return False
    marker.write_text(wanted)
    return True


def python(name: str) -> Path | None:
    return executable(name, "python")


def executable(name: str, program: str) -> Path | None:
    path = DIRECTORY / name / "bin" / program
    return path if (DIRECTORY / name / ".installed").exists() and path.exists() else None
