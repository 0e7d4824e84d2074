"""Starting and stopping the servers a benchmark measures: each in its own process group, stopped as a whole."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.loadgen import NICENESS


def start(command: list[str], cwd: Path, log_path: Path, env: dict[str, str] | None = None,
          niceness: int = 0) -> subprocess.Popen:
    """``command`` in a new session (so :func:`stop` reaches every process it starts), output to ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.Popen(["nice", "-n", str(niceness), *command] if niceness else command, cwd=cwd,
                                env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def start_peer(command: list[str], cwd: Path, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A peer server at the niceness Ray gives its workers, so that no system gets more of the cores than another."""
    return start(command, cwd, log_path, env, niceness=NICENESS)


def wait_ready(name: str, process: subprocess.Popen, ready: Callable[[], bool], log_path: Path,
               timeout: float = 600) -> None:
    """Poll ``ready`` until it holds; fail early if the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log_path}")
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{name} not ready in {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """SIGINT first (serve run shuts Serve and its Ray down on it), then SIGTERM, then SIGKILL, to the group."""
    for sig, wait in ((signal.SIGINT, 60), (signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    time.sleep(3)  # let ports close before the next server starts
