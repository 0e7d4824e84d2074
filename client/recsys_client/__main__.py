"""Score a file of requests through the service's HTTP API.

    python -m recsys_client score --url http://127.0.0.1:8000 --model destinations \\
        --input trips.parquet --output answers.parquet

The input is Parquet or CSV with a column per request field (in CSV, a list of ids as space-separated text). The
output is Parquet: the input's columns and the answer's, prefixed ``answer_``, row for row; it is written beside
its final name and renamed when complete, so a failed run leaves nothing behind. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
import pyarrow.parquet as pq

from recsys_client.client import AsyncClient, BatchEndpoint, ClientOptions
from recsys_client.transport import RetryPolicy, ServiceError

MODELS = ("destinations", "accommodations")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys-client", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score a Parquet or CSV file of requests")
    score.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    score.add_argument("--model", required=True, choices=MODELS)
    score.add_argument("--input", required=True, type=Path, help=".parquet or .csv, a column per request field")
    score.add_argument("--output", required=True, type=Path, help=".parquet")
    score.add_argument("--rows-per-request", type=int, default=None, help="default: the endpoint's limit")
    score.add_argument("--in-flight", type=int, default=4, help="batch requests at once")
    score.add_argument("--json", action="store_true", help="JSON bodies even where Arrow is offered")
    score.add_argument("--deadline", type=float, default=60.0, help="seconds per request, retries included")
    args = parser.parse_args(argv)
    try:
        table = read_requests(args.input)
        started = time.monotonic()
        table, answers = asyncio.run(_score(args, table))
        write_atomically(table, answers, args.output)
    except (ServiceError, OSError, pa.ArrowException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    print(f"scored {table.num_rows:,} rows in {seconds:.1f} s ({table.num_rows / seconds:,.0f} rows/s) "
          f"-> {args.output}", file=sys.stderr)
    return 0


def read_requests(path: Path) -> pa.Table:
    if path.suffix == ".csv":
        return csv.read_csv(path)
    if path.suffix == ".parquet" or path.is_dir():
        return pq.read_table(path)
    raise OSError(f"{path}: not a .parquet or .csv file")


async def _score(args: argparse.Namespace, table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The requests (lists of ids split, for CSV) and their answers."""
    options = ClientOptions(max_rows=args.rows_per_request, max_in_flight=args.in_flight,
                            arrow=False if args.json else None,
                            retry=RetryPolicy(deadline_s=args.deadline))
    async with AsyncClient(args.url, options) as client:
        endpoint: BatchEndpoint = getattr(client, args.model).endpoint
        table = split_id_lists(table, (await endpoint.contract()).list_fields)
        progress = Progress(table.num_rows)
        answers = await endpoint.score_table(table, progress.add)
        progress.done()
        return table, answers


def split_id_lists(table: pa.Table, fields: tuple[str, ...]) -> pa.Table:
    """CSV holds no lists: a list-of-ids field given as text ("8183 15626") becomes a list column."""
    for name in fields:
        if name in table.column_names and pa.types.is_string(table.schema.field(name).type):
            ids = pc.utf8_split_whitespace(table[name]).cast(pa.list_(pa.int64()))
            table = table.set_column(table.column_names.index(name), name, ids)
    return table


def write_atomically(requests: pa.Table, answers: pa.Table, output: Path) -> None:
    combined = requests
    for name in answers.column_names:
        combined = combined.append_column(f"answer_{name}", answers[name])
    partial = output.with_name(f".{output.name}.partial")
    try:
        pq.write_table(combined, partial)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)


class Progress:
    """A line on stderr, redrawn at most twice a second: rows answered, rate, time left."""

    def __init__(self, total: int) -> None:
        self.total, self.answered, self._started, self._shown = total, 0, time.monotonic(), 0.0

    def add(self, rows: int) -> None:
        self.answered += rows
        now = time.monotonic()
        if now - self._shown >= 0.5:
            self._shown = now
            rate = self.answered / max(now - self._started, 1e-9)
            left = (self.total - self.answered) / rate if rate else float("inf")
            print(f"\r{self.answered:,}/{self.total:,} rows ({self.answered / self.total:.0%}), {rate:,.0f} rows/s, "
                  f"~{left:.0f} s left   ", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        print(file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
