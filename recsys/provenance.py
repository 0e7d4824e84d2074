"""Where a published thing came from."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping


def git_commit(environ: Mapping[str, str]) -> str | None:
    """The commit the code came from: ``GIT_COMMIT`` (set by a RayJob, whose working_dir has no .git), else the
    checkout's HEAD."""
    if environ.get("GIT_COMMIT"):
        return environ["GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
