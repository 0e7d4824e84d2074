"""A real Prometheus for the tests (Debian's package, installed by `make test`): started on a free loopback port,
scraping given targets (by job name) every second and evaluating given rule files every second, stopped by PID."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.serving import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Prometheus:
    def __init__(self, work_dir: Path, targets: dict[str, list[str]], rule_files: list[Path]) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        config = work_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": addresses}]}
                               for job, addresses in targets.items()],
        }))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(work_dir / "prometheus.log", "wb")
        self._process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work_dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"prometheus did not start: {(work_dir / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def query(self, expr: str) -> list[dict]:
        """The instant vector ``expr`` evaluates to now; a PromQL error raises (with Prometheus' message)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{expr}: {body.get('error')}")
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The value of an expression that gives at most one series (None for none)."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr}: {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def wait_for_value(self, expr: str, expected: float, timeout: float = 60) -> None:
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last == expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"{expr}: {last}, expected {expected}")

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
