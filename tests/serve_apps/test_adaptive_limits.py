"""HAProxy's controller (serve_apps/adaptive_limits.lua) in the real HAProxy binary, on the config Ray Serve 2.60
renders (``data/haproxy-ray-2.60.cfg``) as the wrapper rewrites it, in front of a stand-in replica: an HTTP server
that finishes one request at a time in a set time, as a replica with a fixed share of the cores does (a real replica
is not needed to tell what HAProxy sends it; the serving tests and the reliability benchmark run the real one).

Everything here listens on Unix sockets in the test's own directory, out of the way of the session's HAProxy (which
binds its TCP ports with SO_REUSEPORT, so that a port picked free could be shared with it), and runs the real binary
(``haproxy_wrapper.real_binary``: the session's environment names the wrapper as Serve's binary)."""

from __future__ import annotations

import asyncio
import csv
import gc
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serve_apps import haproxy_wrapper
from tests.serve_apps.haproxy_files import RAY_CONFIG, error_pages

BACKEND = "http-destinations"


class StandInReplica:
    """Answers ``/-/healthz`` at once and every other request after ``service_s``, one request at a time (requests
    beyond the first wait for it), or 503 to a request that waited longer than ``budget_ms`` since HAProxy stamped it
    when its turn comes (as a replica's lane drops rows past their budget); keeps what HAProxy sent it: the most
    requests it held at once, each request's ``X-Recsys-Offered``, and how long each request it served had waited
    since HAProxy stamped it."""

    def __init__(self, socket: Path, service_s: float, budget_ms: int = 100) -> None:
        self.service_s, self.budget_ms = service_s, budget_ms
        self.socket = socket
        self.held, self.most_held = 0, 0
        self.offered: list[float] = []
        self.waited_ms: list[float] = []
        self._started = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()
        self._started.wait(10)

    def reset(self) -> None:
        self.most_held, self.offered, self.waited_ms = self.held, [], []

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._busy = asyncio.Lock()
        self._loop.run_until_complete(asyncio.start_unix_server(self._serve, str(self.socket)))
        self._started.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                lines = head.split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                if int(headers.get("content-length", 0)):
                    await reader.readexactly(int(headers["content-length"]))
                status = b"200 OK"
                if lines[0].split()[1] != "/-/healthz":
                    self.held += 1
                    self.most_held = max(self.most_held, self.held)
                    self.offered.append(float(headers.get("x-recsys-offered", "nan")))
                    arrived_ms = int(headers["x-request-start"].removeprefix("t="))
                    async with self._busy:
                        waited_ms = time.time() * 1000 - arrived_ms
                        if waited_ms > self.budget_ms:
                            status = b"503 Service Unavailable"
                        else:
                            self.waited_ms.append(waited_ms)
                            await asyncio.sleep(self.service_s)
                    self.held -= 1
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                             b"\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


class HAProxy:
    """The real binary on Ray's config for one replica, rewritten by the wrapper with ``limit``."""

    def __init__(self, tmp_path: Path, replica: StandInReplica, limit: dict[str, int]) -> None:
        self.socket, self.stats_socket = tmp_path / "http.sock", tmp_path / "stats.sock"
        config = haproxy_wrapper.rewrite(RAY_CONFIG, {"destinations": limit}, True, tmp_path / "503.http")
        config = (config.replace("/tmp/haproxy-serve", str(tmp_path))
                  .replace("127.0.0.1:30000", str(replica.socket))
                  .replace("bind 127.0.0.1:8000", f"bind unix@{self.socket}")
                  .replace("bind 127.0.0.1:8404", f"bind unix@{self.stats_socket}")
                  .replace("bind 127.0.0.1:9101", f"bind unix@{tmp_path / 'prometheus.sock'}")
                  .replace("127.0.0.1:8500", str(tmp_path / "fallback.sock"))  # the fallback proxy: not running
                  .replace("log 127.0.0.1:514 local0 info", ""))
        assert "127.0.0.1" not in config, "a TCP listener or server is left in the test's config"
        error_pages(tmp_path)
        (tmp_path / "haproxy.cfg").write_text(config)
        self.process = subprocess.Popen([haproxy_wrapper.real_binary(), "-db", "-f", str(tmp_path / "haproxy.cfg")],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while self.replica_stats().get("status") != "UP":
            assert self.process.poll() is None, self.process.stdout.read().decode()
            assert time.monotonic() < deadline, "the stand-in replica never came UP in HAProxy"
            time.sleep(0.1)

    def replica_stats(self) -> dict[str, str]:
        return self._stats(lambda row: row["pxname"] == BACKEND and row["svname"].startswith("SERVE_REPLICA"))

    def refused_at_once(self) -> int:
        """The frontend's own answers (``http-request return``: the refusals for want of room)."""
        return int(self._stats(lambda row: row["pxname"] == "http_frontend")["intercepted"])

    def _stats(self, wanted) -> dict[str, str]:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.stats_socket)), timeout=5) as http:
                rows = http.get("http://haproxy/stats;csv").text.lstrip("# ")
        except httpx.HTTPError:
            return {}
        return next((row for row in csv.DictReader(rows.splitlines()) if wanted(row)), {})

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def serve_through(tmp_path):
    """``start(limit, service_s, budget_ms=100)``: a stand-in replica and the HAProxy in front of it, with ``limit``.

    The stand-in and its clients run in this process, whose heap the session fills (TensorFlow, Ray's driver, the
    tests before): a full garbage collection of it stops both for ~0.3 s (seen in this module's tests), longer than
    the budget, and failed two of them in make test. Frozen, the heap so far is left out of collections while a
    test runs."""
    gc.freeze()
    started: list[HAProxy] = []

    def start(limit: dict[str, int], service_s: float, budget_ms: int = 100) -> tuple[StandInReplica, HAProxy]:
        replica = StandInReplica(tmp_path / "replica.sock", service_s, budget_ms)
        started.append(HAProxy(tmp_path, replica, limit))
        return replica, started[-1]

    yield start
    for haproxy in started:
        haproxy.stop()
    gc.unfreeze()


@dataclass
class Load:
    statuses: Counter  # the answers of the second half
    limits: list[int]  # the replica's limit, read every 0.2 s in the second half


def load(haproxy: HAProxy, clients: int, seconds: float, halfway=None) -> Load:
    """``clients`` closed-loop clients for ``seconds``. The first half lets the controller settle; ``halfway`` is run
    when it is over."""
    result = Load(Counter(), [])

    async def client(http: httpx.AsyncClient, stop: float) -> None:
        while time.monotonic() < stop:
            response = await http.post("http://haproxy/destinations/recommend", json={})
            result.statuses[response.status_code] += 1

    async def observe(stop: float) -> None:
        await asyncio.sleep(seconds / 2)
        result.statuses.clear()
        if halfway:
            halfway()
        while time.monotonic() < stop - 0.1:
            result.limits.append(int(await asyncio.to_thread(lambda: haproxy.replica_stats()["slim"])))
            await asyncio.sleep(0.2)

    async def run() -> None:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        transport = httpx.AsyncHTTPTransport(uds=str(haproxy.socket), limits=limits)
        async with httpx.AsyncClient(transport=transport, timeout=10) as http:
            stop = time.monotonic() + seconds
            await asyncio.gather(observe(stop), *(client(http, stop) for _ in range(clients)))

    asyncio.run(run())
    return result


ADAPTIVE = {"maxconn": 32, "queue_ms": 100, "maxqueue": 32, "target_ms": 25, "held": 0}


def test_a_slow_replica_is_sent_only_what_it_finishes_in_the_target_and_the_rest_is_refused_at_once(serve_through):
    """A replica finishing 40 requests a second, under 40 clients: the controller lowers its limit from 32 to about
    40/s x 25 ms (at least 2), keeps the queue to what it takes up in the budget less twice that, and tells it how
    much was offered per request sent."""
    replica, haproxy = serve_through(ADAPTIVE, service_s=0.025)
    run = load(haproxy, 40, 6, halfway=replica.reset)
    assert set(run.statuses) == {200, 503}, run.statuses
    assert max(run.limits) <= 4, run.limits
    assert replica.most_held <= 5  # the limit, plus what was in it when it last fell
    assert min(replica.offered) > 2  # 40 clients offer far more than the replica's 40 a second


def test_while_requests_are_turned_away_the_newest_queued_request_goes_first(serve_through):
    """40 clients on the slow replica, 16 requests held per replica: its queue holds more than it takes up before the
    queue's timeout (50 ms). Taken oldest first, every request served would have waited out most of that timeout
    (and those behind it would time out all the same); taken newest first, the ones served waited little and the
    stale ones time out, so the answers come within the budget."""
    replica, haproxy = serve_through({**ADAPTIVE, "held": 16}, service_s=0.025)
    run = load(haproxy, 40, 6, halfway=replica.reset)
    assert set(run.statuses) == {200, 503}, run.statuses
    waited = sorted(replica.waited_ms)
    # newest first, ~32 ms: one request ahead in the replica (25 ms), a few queued; oldest first, ~73 ms
    assert waited[len(waited) // 2] < 50, waited


def test_a_fast_replica_keeps_its_whole_limit_and_no_request_is_refused(serve_through):
    # A stall of this process, which runs the stand-in too, is not the subject: no budget it could reach.
    replica, haproxy = serve_through(ADAPTIVE, service_s=0.0005, budget_ms=60_000)
    run = load(haproxy, 8, 6, halfway=replica.reset)
    assert set(run.statuses) == {200}, run.statuses
    assert set(run.limits) == {32}
    assert 1 <= min(replica.offered) and max(replica.offered) < 1.1


def test_without_a_target_the_limit_stays_where_the_config_puts_it(serve_through):
    replica, haproxy = serve_through({**ADAPTIVE, "target_ms": 0}, service_s=0.025)
    run = load(haproxy, 40, 6, halfway=replica.reset)
    assert set(run.limits) == {32}
    assert replica.most_held > 16


@pytest.mark.parametrize(("held", "refused_after_the_flood"), [(16, False), (0, True)], ids=["held", "none-held"])
def test_clients_within_the_held_requests_are_never_refused_at_once_after_a_flood(serve_through, held,
                                                                                  refused_after_the_flood):
    """A flood of 40 clients brings the slow replica's limit to its floor; then 12, within the autoscaling target it
    is sized for: with ``held`` 16 none is refused at once (a request that cannot be taken up in time waits out the
    queue's timeout instead: closed-loop clients retrying at once cannot keep the replica in a storm of refusals).
    Without it, the queue's room is what the replica takes up in the budget, and some of the 12 are refused."""
    _, haproxy = serve_through({**ADAPTIVE, "held": held}, service_s=0.025)
    assert min(load(haproxy, 40, 4).limits) <= 4  # the flood brought it down (a pause in it may lift it a moment)
    refused: list[int] = []
    run = load(haproxy, 12, 4, halfway=lambda: refused.append(haproxy.refused_at_once()))
    assert (haproxy.refused_at_once() > refused[0]) is refused_after_the_flood, run.statuses


def test_after_a_flood_a_load_that_fits_gets_the_whole_limit_back(serve_through):
    """3 clients fit the slow replica (at most 75 ms each, within the budget): once the flood that lowered its limit
    is over nothing is turned away, and the limit goes back to 32 although the replica stays full, since holding
    clients that fit in HAProxy's queue rather than in the replica only costs the replica batching."""
    _, haproxy = serve_through(ADAPTIVE, service_s=0.025)
    assert min(load(haproxy, 40, 4).limits) <= 4  # the flood brought it down (a pause in it may lift it a moment)
    run = load(haproxy, 3, 4)
    assert set(run.statuses) == {200}, run.statuses
    assert run.limits[-1] == 32, run.limits


def test_after_a_flood_clients_the_replica_answers_in_the_budget_get_the_whole_limit_back(serve_through):
    """A flood brings the slow replica's limit to its floor (2); then its cores are back (it finishes ~100 requests
    a second) and 8 clients come: it answers them all within the budget (none waits 80 ms), so they are sent to it,
    although some timed out in the queue at first. Kept at the limit, 6 of them would queue for up to 60 ms, past the
    queue's timeout (50 ms), and each such 503, a request turned away, would keep the limit down. (The stand-in's own
    budget check is set out of the way then: the subject is HAProxy's queue.)"""
    replica, haproxy = serve_through({**ADAPTIVE, "held": 16}, service_s=0.025)
    assert min(load(haproxy, 40, 4).limits) <= 4  # the flood brought it down (a pause in it may lift it a moment)
    replica.service_s, replica.budget_ms = 0.010, 1000
    run = load(haproxy, 8, 4)
    assert set(run.statuses) == {200}, run
    assert run.limits[-1] == 32, run.limits
