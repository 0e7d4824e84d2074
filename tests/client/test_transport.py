"""The client's retries and deadline against faults the real service cannot be made to produce on demand: a
connection reset mid-request, a service that only sheds. ScriptedServer is a stand-in HTTP server (real sockets
on loopback, answers as scripted); the client's behaviour against the real service shedding load is in
tests/serve_apps/test_client.py."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from recsys_client.transport import DeadlineExceeded, InvalidRequest, RetryPolicy, ServiceError, Transport


class ScriptedServer:
    """Answers the n-th request with ``script[n]`` (the last entry repeats): "reset" closes the connection without
    an answer; a status code answers it, 503 with ``Retry-After: 0``."""

    def __init__(self, script: list) -> None:
        self.script, self.requests = script, 0

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/x"

    async def __aexit__(self, *_) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:  # the client closed the connection
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                action = self.script[min(self.requests, len(self.script) - 1)]
                self.requests += 1
                if action == "reset":
                    writer.transport.abort()
                    return
                body = json.dumps({"ok": True} if action == 200 else {"detail": "scripted"}).encode()
                extra = b"Retry-After: 0\r\n" if action == 503 else b""
                writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                             % (action, len(body), extra, body))
                await writer.drain()
        finally:
            writer.close()


def run(script: list, policy: RetryPolicy) -> tuple[object, int]:
    async def scenario():
        server = ScriptedServer(script)
        async with server as url, httpx.AsyncClient() as http:
            try:
                return (await Transport(http, policy).request("POST", url, json={"a": 1})).json(), server.requests
            except ServiceError as err:
                return err, server.requests
    return asyncio.run(scenario())


FAST = RetryPolicy(deadline_s=10, backoff_s=0.001, max_backoff_s=0.01)


def test_connection_resets_and_503s_are_retried_until_an_answer():
    answer, requests = run(["reset", 503, "reset", 503, 200], FAST)
    assert answer == {"ok": True} and requests == 5


def test_a_4xx_is_not_retried():
    answer, requests = run([422, 200], FAST)
    assert isinstance(answer, InvalidRequest) and answer.status == 422 and requests == 1


def test_a_500_is_not_retried():
    answer, requests = run([500, 200], FAST)
    assert type(answer) is ServiceError and answer.status == 500 and requests == 1


def test_a_service_that_only_sheds_gives_deadline_exceeded_in_time():
    started = time.monotonic()
    answer, requests = run([503], RetryPolicy(deadline_s=1.0, backoff_s=0.02, max_backoff_s=0.2))
    assert isinstance(answer, DeadlineExceeded) and "last: 503" in str(answer)
    assert time.monotonic() - started < 3 and requests > 2


def test_backoff_grows_and_stays_under_its_cap():
    policy = RetryPolicy(backoff_s=0.1, max_backoff_s=1.0)
    waits = [policy.backoff(attempt) for attempt in range(8)]
    assert 0.05 <= waits[0] <= 0.1 and all(0.5 <= w <= 1.0 for w in waits[5:])


@pytest.mark.parametrize("linger", [0.0, 0.01])
def test_coalescer_answers_each_caller_in_order_and_bisects_a_bad_row(linger):
    from recsys_client.coalescer import Coalescer

    sent: list[list[int]] = []

    async def send(rows):
        sent.append(list(rows))
        await asyncio.sleep(0.001)
        if -1 in rows:
            raise InvalidRequest("bad row", 422)
        return [2 * r for r in rows]

    async def scenario():
        coalescer = Coalescer(send, max_rows=8, linger_s=linger, max_in_flight=2)
        return await asyncio.gather(*(coalescer.call(r) for r in [*range(1, 20), -1, 21]), return_exceptions=True)

    answers = asyncio.run(scenario())
    assert answers[:19] == [2 * r for r in range(1, 20)] and answers[20] == 42
    assert isinstance(answers[19], InvalidRequest)
    assert all(len(rows) <= 8 for rows in sent)
