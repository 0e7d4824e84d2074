"""The one load generator every system is measured with: vegeta (Go), on loopback, bounded in time.

Two modes:

* closed loop: ``concurrency`` clients, each sending its next request when the previous answer arrives
  (``-rate=0 -max-workers=N``); measures what the server sustains at that concurrency;
* open loop: requests sent at a fixed arrival ``rate`` whatever the server does; latency counts from the moment a
  request was due, so a stalled server cannot hide its queueing (no coordinated omission), and a rate above
  capacity shows up as growing latency and errors instead of as a slower sender.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

VEGETA = "github.com/tsenart/vegeta/v12@v12.13.0"
TOOLS = Path(__file__).resolve().parent.parent / ".data" / "tools"


@dataclass(frozen=True)
class Target:
    url: str
    body: dict


@dataclass(frozen=True)
class LoadResult:
    mode: str  # "closed" or "open"
    level: float  # concurrency (closed) or requests/s offered (open)
    seconds: float
    requests: int
    throughput: float  # successful requests per second
    success: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def vegeta() -> Path:
    """The vegeta binary: on PATH, else built once into .data/tools with `go install`."""
    found = shutil.which("vegeta")
    if found:
        return Path(found)
    binary = TOOLS / "vegeta"
    if not binary.exists():
        subprocess.run(["go", "install", VEGETA], env={**os.environ, "GOBIN": str(TOOLS)}, check=True, timeout=900,
                       capture_output=True)
    return binary


def write_targets(targets: list[Target], path: Path) -> Path:
    """Targets in vegeta's JSON format, cycled in order (one JSON object per line)."""
    with open(path, "w") as out:
        for target in targets:
            body = base64.b64encode(json.dumps(target.body).encode()).decode()
            out.write(json.dumps({"method": "POST", "url": target.url, "body": body,
                                  "header": {"Content-Type": ["application/json"]}}) + "\n")
    return path


def closed_loop(targets: Path, concurrency: int, seconds: float, timeout_s: float = 10) -> LoadResult:
    return _attack(targets, ["-rate=0", f"-workers={concurrency}", f"-max-workers={concurrency}"], "closed",
                   concurrency, seconds, timeout_s)


def open_loop(targets: Path, rate: float, seconds: float, timeout_s: float = 10) -> LoadResult:
    return _attack(targets, [f"-rate={int(rate)}/s", "-workers=64", "-max-workers=2048"], "open", rate, seconds,
                   timeout_s)


def _attack(targets: Path, flags: list[str], mode: str, level: float, seconds: float, timeout_s: float) -> LoadResult:
    binary = vegeta()
    attack = subprocess.Popen([str(binary), "attack", "-format=json", f"-targets={targets}", f"-duration={seconds}s",
                               f"-timeout={timeout_s}s", "-keepalive", *flags], stdout=subprocess.PIPE)
    report = subprocess.run([str(binary), "report", "-type=json"], stdin=attack.stdout, capture_output=True,
                            check=True, timeout=seconds + timeout_s + 60)
    attack.wait(timeout=60)
    data = json.loads(report.stdout)
    latencies = data["latencies"]
    return LoadResult(mode=mode, level=level, seconds=seconds, requests=data["requests"],
                      throughput=round(data["throughput"], 1), success=round(data["success"], 4),
                      p50_ms=latencies["50th"] / 1e6, p90_ms=latencies["90th"] / 1e6,
                      p99_ms=latencies["99th"] / 1e6, max_ms=latencies["max"] / 1e6,
                      errors=sorted(set(data.get("errors") or []))[:5])
