"""What the real HAProxy reads in the wrapper's tests: the config Ray Serve 2.60 renders, and the error pages that
config (as the wrapper rewrites it) names beside itself."""

from __future__ import annotations

from pathlib import Path

from serve_apps import haproxy_wrapper

RAY_CONFIG = (Path(__file__).parent / "data" / "haproxy-ray-2.60.cfg").read_text()


def error_pages(directory: Path) -> None:
    (directory / "500.http").write_text("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    (directory / "503.http").write_text(haproxy_wrapper.error_page())
