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
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

VEGETA = "github.com/tsenart/vegeta/v12@v12.13.0"
# Ray runs its workers (Serve replicas, and HAProxy under them) at nice 15. The load generator runs at the same
# niceness, and so do the peer servers (bench/serving.py): at nice 0 vegeta would take the cores from the server it
# measures whenever the two compete, which is exactly when it matters.
NICENESS = 15
TOOLS = Path(__file__).resolve().parent.parent / ".data" / "tools"


@dataclass(frozen=True)
class Target:
    url: str
    body: dict | bytes  # a JSON body, or bytes sent as they are under content_type
    content_type: str = "application/json"
    accept: str | None = None


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


@dataclass(frozen=True)
class StatusBreakdown:
    """One load point, answer by answer: what share got which status, how fast, and when the first 503 came."""

    mode: str
    level: float
    seconds: float
    requests: int
    statuses: dict[str, int]  # "200", "503", ... and "error" for connection failures and timeouts
    ok_per_second: float
    p50_ok_ms: float | None
    p99_ok_ms: float | None
    p50_503_ms: float | None
    p99_503_ms: float | None
    first_503_s: float | None  # seconds from the start of the load to the first 503
    retry_after_share: float | None  # share of the 503s that carried Retry-After
    errors: list[str] = field(default_factory=list)
    timeline: list[tuple[int, int]] = field(default_factory=list)  # per second of the load: (200s, all others)

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
            content = target.body if isinstance(target.body, bytes) else json.dumps(target.body).encode()
            header = {"Content-Type": [target.content_type], **({"Accept": [target.accept]} if target.accept else {})}
            out.write(json.dumps({"method": "POST", "url": target.url, "body": base64.b64encode(content).decode(),
                                  "header": header}) + "\n")
    return path


def closed_loop(targets: Path, concurrency: int, seconds: float, timeout_s: float = 10) -> LoadResult:
    return _attack(targets, ["-rate=0", f"-workers={concurrency}", f"-max-workers={concurrency}"], "closed",
                   concurrency, seconds, timeout_s)


def open_loop(targets: Path, rate: float, seconds: float, timeout_s: float = 10) -> LoadResult:
    return _attack(targets, [f"-rate={int(rate)}/s", "-workers=64", "-max-workers=2048"], "open", rate, seconds,
                   timeout_s)


def breakdown(targets: Path, mode: str, level: float, seconds: float, timeout_s: float = 10) -> StatusBreakdown:
    """Like :func:`closed_loop` / :func:`open_loop`, but keeps every answer's status, latency and headers."""
    flags = ["-rate=0", f"-workers={int(level)}", f"-max-workers={int(level)}"] if mode == "closed" else \
        [f"-rate={int(level)}/s", "-workers=64", "-max-workers=4096"]
    binary, rows = vegeta(), []
    with _attacked(targets, flags, seconds, timeout_s) as results:
        encoded = subprocess.run([str(binary), "encode", "--to", "json", str(results)], capture_output=True, text=True,
                                 check=True)
    for line in encoded.stdout.splitlines():
        result = json.loads(line)
        rows.append((dt.datetime.fromisoformat(result["timestamp"]).timestamp(), result["code"],
                     result["latency"] / 1e6, "Retry-After" in (result.get("headers") or {}), result["error"]))
    if not rows:
        raise RuntimeError(f"vegeta sent no requests to {targets}")
    start = min(r[0] for r in rows)
    statuses: dict[str, int] = {}
    for _, code, _, _, error in rows:
        key = "error" if code == 0 else str(code)
        statuses[key] = statuses.get(key, 0) + 1
    ok = np.array([r[2] for r in rows if r[1] == 200])
    shed = [r for r in rows if r[1] == 503]
    shed_latency = np.array([r[2] for r in shed])
    return StatusBreakdown(
        mode=mode, level=level, seconds=seconds, requests=len(rows), statuses=dict(sorted(statuses.items())),
        ok_per_second=round(len(ok) / seconds, 1),
        p50_ok_ms=_percentile(ok, 50), p99_ok_ms=_percentile(ok, 99),
        p50_503_ms=_percentile(shed_latency, 50), p99_503_ms=_percentile(shed_latency, 99),
        first_503_s=round(min(r[0] for r in shed) - start, 2) if shed else None,
        retry_after_share=round(sum(r[3] for r in shed) / len(shed), 4) if shed else None,
        errors=sorted({r[4] for r in rows if r[4]})[:5], timeline=_timeline(rows, start, seconds))


def _timeline(rows: list[tuple], start: float, seconds: float) -> list[tuple[int, int]]:
    ok, other = [0] * (int(seconds) + 1), [0] * (int(seconds) + 1)
    for timestamp, code, *_ in rows:
        second = min(int(timestamp - start), int(seconds))
        (ok if code == 200 else other)[second] += 1
    return list(zip(ok, other))


def _percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def _attack(targets: Path, flags: list[str], mode: str, level: float, seconds: float, timeout_s: float) -> LoadResult:
    with _attacked(targets, flags, seconds, timeout_s) as results:
        report = subprocess.run([str(vegeta()), "report", "-type=json", str(results)], capture_output=True,
                                check=True, timeout=600)
    data = json.loads(report.stdout)
    latencies = data["latencies"]
    return LoadResult(mode=mode, level=level, seconds=seconds, requests=data["requests"],
                      throughput=round(data["throughput"], 1), success=round(data["success"], 4),
                      p50_ms=latencies["50th"] / 1e6, p90_ms=latencies["90th"] / 1e6,
                      p99_ms=latencies["99th"] / 1e6, max_ms=latencies["max"] / 1e6,
                      errors=sorted(set(data.get("errors") or []))[:5])


@contextlib.contextmanager
def _attacked(targets: Path, flags: list[str], seconds: float, timeout_s: float) -> Iterator[Path]:
    """vegeta's results of one load point, in its binary format in a file removed afterwards. They are decoded
    only once the load is over: decoding thousands of answers a second alongside it took the cores from the
    server being measured."""
    with tempfile.TemporaryDirectory(prefix="vegeta-") as directory:
        results = Path(directory) / "results.bin"
        with open(results, "wb") as out:
            subprocess.run(["nice", "-n", str(NICENESS), str(vegeta()), "attack", "-format=json", f"-targets={targets}",
                            f"-duration={seconds}s", f"-timeout={timeout_s}s", "-keepalive", *flags], stdout=out,
                           check=True, timeout=seconds + timeout_s + 120)
        yield results
