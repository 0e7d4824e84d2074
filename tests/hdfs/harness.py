"""Start and drive the MiniDFSCluster harness (MiniHdfs.java) from Python.

``make hdfs-harness`` compiles it with Maven (dependencies cached in ~/.m2); :class:`MiniHdfs` builds it on first
use if that has not happened, starts it on a free loopback port, and sends it commands over stdin (stop or start
the NameNode or a DataNode). It shuts down with the process that started it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

HARNESS = Path(__file__).resolve().parent
CLASSES = HARNESS / "target" / "classes"
CLASSPATH = HARNESS / "target" / "classpath.txt"


def build() -> None:
    sources = [HARNESS / "pom.xml", *HARNESS.glob("src/**/*.java")]
    if CLASSPATH.exists() and CLASSPATH.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed to build the HDFS test harness")
    subprocess.run([mvn, "-q", "-B", "-f", str(HARNESS / "pom.xml"), "compile"], check=True, timeout=1200)


class MiniHdfs:
    """A running MiniDFSCluster: ``uri`` is ``hdfs://127.0.0.1:<port>``."""

    def __init__(self, base_dir: Path, datanodes: int = 2) -> None:
        build()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"hdfs://127.0.0.1:{self.port}"
        self._log = open(base_dir.parent / f"{base_dir.name}.log", "w")
        self._process = subprocess.Popen(
            ["java", "-Xmx1g", "-cp", f"{CLASSES}:{CLASSPATH.read_text().strip()}", "recsys.hdfs.MiniHdfs",
             str(base_dir), str(self.port), str(datanodes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1)
        line = self._read_line(timeout=300)
        if line != f"READY {self.uri}":
            self.close()
            raise RuntimeError(f"MiniDFSCluster did not start: {line!r} (log: {self._log.name})")

    def stop_namenode(self) -> None:
        self._command("stop-namenode")

    def start_namenode(self) -> None:
        self._command("start-namenode")

    def stop_datanode(self, index: int) -> None:
        self._command(f"stop-datanode {index}")

    def start_datanode(self, index: int) -> None:
        self._command(f"start-datanode {index}")

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.write("shutdown\n")
                self._process.stdin.flush()
                self._process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._log.close()

    def _command(self, command: str, timeout: float = 180) -> None:
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        answer = self._read_line(timeout)
        if answer != f"OK {command}":
            raise RuntimeError(f"MiniDFSCluster {command!r} failed: {answer!r} (log: {self._log.name})")

    def _read_line(self, timeout: float) -> str | None:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self._process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return result[0].strip() if result else None
