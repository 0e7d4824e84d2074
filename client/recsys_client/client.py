"""The service's Python client: an endpoint per model, single calls coalesced into batch requests, Arrow bodies
where the service reads them, retries within a deadline.

    async with AsyncClient("http://127.0.0.1:8000") as client:
        answer = await client.destinations.recommend({"cities": [8183, 15626], "booker_country": "Elbonia",
                                                      "device_class": "mobile"})
        answers = await client.destinations.recommend_many(trips)          # any number, in order
        table = await client.destinations.score_table(trips_table)         # Arrow in, Arrow out

    with Client("http://127.0.0.1:8000") as client:                        # the same, from threads
        answer = client.destinations.recommend(trip)

What each batch endpoint takes (row limit, Arrow or JSON) is read from the service's OpenAPI document on first use.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
import pyarrow as pa

from recsys_client.answers import Destinations, Ranking, Search, Trip
from recsys_client.coalescer import Coalescer
from recsys_client.transport import RetryPolicy, ServiceError, Transport

ARROW_STREAM = "application/vnd.apache.arrow.stream"
VERSION_METADATA = b"model_version"
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class ClientOptions:
    linger_s: float = 0.002  # how long a single call waits for others to share its request
    max_rows: int | None = None  # rows per batch request; default: the endpoint's limit
    max_in_flight: int = 4  # batch requests at once, per endpoint
    arrow: bool | None = None  # Arrow bodies; default: when the service reads them
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class _Contract:
    """What the service's OpenAPI document says of a batch endpoint."""

    max_rows: int
    arrow: bool
    list_fields: tuple[str, ...]  # fields that are arrays of integers (CSV columns to split)


class BatchEndpoint(Generic[Answer]):
    """A model's single and batch routes (``<prefix><path>``, ``<prefix><path>/batch``)."""

    def __init__(self, transport: Transport, base_url: str, prefix: str, path: str, answer: Callable[..., Answer],
                 options: ClientOptions) -> None:
        self._transport, self._options, self._answer = transport, options, answer
        self._prefix, self._url = f"{base_url}{prefix}", f"{base_url}{prefix}{path}/batch"
        self._path = f"{path}/batch"
        self._contract: _Contract | None = None
        self._contract_lock = asyncio.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._coalescer: Coalescer[Mapping, Answer] | None = None

    async def call(self, row: Mapping) -> Answer:
        """One row's answer, sent with the other calls that arrive within the linger."""
        if self._coalescer is None:
            contract = await self.contract()
            if self._coalescer is None:  # the first of the calls that waited for the contract makes it
                self._coalescer = Coalescer(self.send, max_rows=self._rows_per_request(contract),
                                            linger_s=self._options.linger_s,
                                            max_in_flight=self._options.max_in_flight)
        return await self._coalescer.call(row)

    async def call_many(self, rows: Sequence[Mapping]) -> list[Answer]:
        """Answers for ``rows`` in order, as batch requests of the endpoint's size, a bounded number at once."""
        size = self._rows_per_request(await self.contract())
        parts = await asyncio.gather(*(self._bounded(self.send, rows[i:i + size])
                                       for i in range(0, len(rows), size)))
        return [answer for part in parts for answer in part]

    async def score_table(self, table: pa.Table, progress: Callable[[int], None] | None = None) -> pa.Table:
        """The answers' columns for a table of requests (a column per request field), row for row; ``progress``
        gets the row count of each answered request."""
        contract = await self.contract()
        size = self._rows_per_request(contract)

        async def part(start: int) -> pa.Table:
            rows = table.slice(start, size)
            answers = await self._bounded(self._send_table if contract.arrow else self._send_table_as_json, rows)
            if progress:
                progress(rows.num_rows)
            return answers

        parts = await asyncio.gather(*(part(start) for start in range(0, table.num_rows, size)))
        return pa.concat_tables([p.replace_schema_metadata(None) for p in parts]) if parts else pa.table({})

    async def send(self, rows: Sequence[Mapping]) -> list[Answer]:
        """One batch request for ``rows`` (at most the endpoint's limit)."""
        contract = await self.contract()
        if contract.arrow:
            table = await self._send_table(_table_of(rows))
            return [self._answer(**row) for row in table.to_pylist()]
        response = await self._transport.request("POST", self._url, json={"requests": list(rows)})
        return [self._answer(**row) for row in response.json()["results"]]

    async def contract(self) -> _Contract:
        async with self._contract_lock:
            if self._contract is None:
                response = await self._transport.request("GET", f"{self._prefix}/openapi.json")
                self._contract = _read_contract(response.json(), self._path, self._options.arrow)
            return self._contract

    async def _send_table(self, rows: pa.Table) -> pa.Table:
        response = await self._transport.request("POST", self._url, content=_stream(rows),
                                                 headers={"content-type": ARROW_STREAM, "accept": ARROW_STREAM})
        with pa.ipc.open_stream(response.content) as reader:
            return reader.read_all()

    async def _send_table_as_json(self, rows: pa.Table) -> pa.Table:
        requests = [{name: value for name, value in row.items() if value is not None} for row in rows.to_pylist()]
        response = await self._transport.request("POST", self._url, content=json.dumps(
            {"requests": requests}, default=str), headers={"content-type": "application/json"})
        return pa.Table.from_pylist(response.json()["results"])

    async def _bounded(self, send, rows):
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._options.max_in_flight)
        async with self._slots:
            return await send(rows)

    def _rows_per_request(self, contract: _Contract) -> int:
        return min(self._options.max_rows or contract.max_rows, contract.max_rows)


class DestinationsEndpoint:
    """``/destinations``: next destinations of trips."""

    def __init__(self, endpoint: BatchEndpoint[Destinations]) -> None:
        self.endpoint = endpoint

    async def recommend(self, trip: Trip) -> Destinations:
        return await self.endpoint.call(trip)

    async def recommend_many(self, trips: Sequence[Trip]) -> list[Destinations]:
        return await self.endpoint.call_many(trips)

    async def score_table(self, trips: pa.Table, progress: Callable[[int], None] | None = None) -> pa.Table:
        return await self.endpoint.score_table(trips, progress)


class AccommodationsEndpoint:
    """``/accommodations``: properties ranked for searches."""

    def __init__(self, endpoint: BatchEndpoint[Ranking]) -> None:
        self.endpoint = endpoint

    async def rank(self, search: Search) -> Ranking:
        return await self.endpoint.call(search)

    async def rank_many(self, searches: Sequence[Search]) -> list[Ranking]:
        return await self.endpoint.call_many(searches)

    async def score_table(self, searches: pa.Table, progress: Callable[[int], None] | None = None) -> pa.Table:
        return await self.endpoint.score_table(searches, progress)


class AsyncClient:
    """The client for asyncio callers; one per event loop."""

    def __init__(self, base_url: str, options: ClientOptions | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.options = options or ClientOptions()
        base_url = base_url.rstrip("/")
        self._http = http or httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
        transport = Transport(self._http, self.options.retry)
        self.destinations = DestinationsEndpoint(BatchEndpoint(transport, base_url, "/destinations", "/recommend",
                                                               Destinations, self.options))
        self.accommodations = AccommodationsEndpoint(BatchEndpoint(transport, base_url, "/accommodations", "/rank",
                                                                   Ranking, self.options))
        self._transport, self._base_url = transport, base_url

    async def trip(self, request: Mapping[str, Any]) -> dict:
        """``/trips/recommend``: a trip's destinations with their best properties (no batch route: one request
        per call, retried as any)."""
        return (await self._transport.request("POST", f"{self._base_url}/trips/recommend", json=request)).json()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_) -> None:
        await self.aclose()


class Client:
    """The same client for threaded callers: an event loop on a thread of its own runs an :class:`AsyncClient`,
    so calls made from many threads at once are coalesced as the async ones are."""

    def __init__(self, base_url: str, options: ClientOptions | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recsys-client", daemon=True)
        self._thread.start()
        self._client: AsyncClient = self._run(_make(base_url, options))
        self.destinations = _Sync(self._run, self._client.destinations)
        self.accommodations = _Sync(self._run, self._client.accommodations)

    def trip(self, request: Mapping[str, Any]) -> dict:
        return self._run(self._client.trip(request))

    def close(self) -> None:
        self._run(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _run(self, coroutine):
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result()


class _Sync:
    """An endpoint's async methods, called from any thread: ``run`` runs each call's coroutine on the client's loop
    and waits for it."""

    def __init__(self, run: Callable[[Any], Any], endpoint: object) -> None:
        self._run, self._endpoint = run, endpoint

    def __getattr__(self, name: str):
        method = getattr(self._endpoint, name)
        return lambda *args, **kwargs: self._run(method(*args, **kwargs))


async def _make(base_url: str, options: ClientOptions | None) -> AsyncClient:
    return AsyncClient(base_url, options)  # made on the loop that will use it


def _read_contract(openapi: dict, path: str, arrow: bool | None) -> _Contract:
    try:
        body = openapi["paths"][path]["post"]["requestBody"]["content"]
        schema = body["application/json"]["schema"]
        if "$ref" in schema:
            schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        requests = schema["properties"]["requests"]
        item = openapi["components"]["schemas"][requests["items"]["$ref"].rsplit("/", 1)[-1]]
    except (KeyError, TypeError) as err:
        raise ServiceError(f"the service's OpenAPI document has no batch route {path}: {err}") from None
    offered = ARROW_STREAM in body
    if arrow and not offered:
        raise ServiceError(f"Arrow bodies asked for, but {path} reads only {sorted(body)}")
    lists = tuple(name for name, spec in item["properties"].items()
                  if spec.get("type") == "array" and spec.get("items", {}).get("type") == "integer")
    return _Contract(max_rows=int(requests.get("maxItems", 1)), arrow=offered if arrow is None else arrow,
                     list_fields=lists)


def _table_of(rows: Sequence[Mapping]) -> pa.Table:
    """Rows as columns; a field a row leaves out is null there (the service takes its default)."""
    names = dict.fromkeys(name for row in rows for name in row)
    return pa.table({name: [row.get(name) for row in rows] for name in names})


def _stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
