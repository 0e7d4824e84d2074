"""Request columns read from the request types' own JSON Schema: an Arrow body and a JSON body of the same rows
become the same record batch, and an Arrow body is held to the JSON body's rules, naming the column and row."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from recsys.trip_answer import NextStays, property_searches
from serve_apps.accommodations import API as RANKING
from serve_apps.accommodations import RankRequest, search_columns
from serve_apps.core.arrow_body import MalformedBody, read_stream, write_stream
from serve_apps.core.errors import BodyTooLarge, InvalidBody
from serve_apps.destinations import API as DESTINATIONS
from serve_apps.destinations import RecommendRequest

TRIPS = [{"cities": [1, 2, 3], "booker_country": "Elbonia", "device_class": "mobile"},
         {"cities": [5], "booker_country": "Atlantis", "device_class": "tablet", "affiliate_id": 7, "k": 9}]
SEARCHES = [{"city_id": 1, "booker_country": "x", "device_class": "m", "checkin": "2026-12-18", "nights": 2,
             "candidates": [{"property_id": 3, "price": 10.0}, {"property_id": 4}]},
            {"city_id": 2, "booker_country": "y", "device_class": "d", "checkin": "2026-12-19", "nights": 1,
             "adults": 3, "k": 5}]
LIMIT = 1 << 20


def table_of(rows: list[dict]) -> pa.Table:
    """A column per field any row has (pa.Table.from_pylist keeps only the first row's), null where one lacks it."""
    names = dict.fromkeys(name for row in rows for name in row)
    return pa.table({name: [row.get(name) for row in rows] for name in names})


def test_json_and_arrow_bodies_become_the_same_columns():
    from_json = DESTINATIONS.columns.from_models([RecommendRequest.model_validate(t) for t in TRIPS])
    table = pa.table({"cities": pa.array([[1, 2, 3], [5]], pa.large_list(pa.int16())),
                      "booker_country": pa.array(["Elbonia", "Atlantis"]).dictionary_encode(),
                      "device_class": pa.array(["mobile", "tablet"], pa.large_string()),
                      "affiliate_id": pa.array([None, 7], pa.uint32()), "k": pa.array([None, 9], pa.int8())})
    assert DESTINATIONS.columns.from_arrow(table).equals(from_json)
    assert from_json.to_pylist()[0] == {**TRIPS[0], "affiliate_id": None, "k": 4}  # the defaults, as in JSON


def test_nested_rows_dates_and_defaults_of_the_ranking_requests():
    from_json = RANKING.columns.from_models([RankRequest.model_validate(s) for s in SEARCHES])
    from_arrow = RANKING.columns.from_arrow(table_of(SEARCHES))
    assert from_arrow.equals(from_json)
    first, second = from_json.to_pylist()
    assert first["checkin"] == dt.date(2026, 12, 18) and first["adults"] == 2 and second["adults"] == 3
    assert first["candidates"] == [{"property_id": 3, "price": 10.0}, {"property_id": 4, "price": None}]
    assert second["candidates"] is None and second["k"] == 5
    dates = table_of(SEARCHES).set_column(3, "checkin", pa.array([dt.date(2026, 12, 18),
                                                                              dt.date(2026, 12, 19)]))
    assert RANKING.columns.from_arrow(dates).equals(from_json)


def test_columns_a_composition_assembles_are_those_a_checked_body_gives():
    """A trip's searches go to the ranking replica unchecked (its request was validated already): the same
    record batch, in the canonical schema with the defaults, as the checked path."""
    searches = property_searches(NextStays(booker_country=["Elbonia"], device_class=["mobile"],
                                           checkin=[dt.date(2026, 12, 18)], nights=[2], adults=[3], children=[0],
                                           rooms=[1]), [[7, 8, 9, 10]], 3)[0]
    assembled = search_columns(searches, 4)
    checked = RANKING.columns.from_models([RankRequest(city_id=city, booker_country="Elbonia", device_class="mobile",
                                                       checkin=dt.date(2026, 12, 18), nights=2, adults=3, k=4)
                                           for city in (7, 8, 9)])
    assert assembled.schema.equals(RANKING.columns.schema) and assembled.equals(checked)


def _replace(table: pa.Table, columns: dict) -> pa.Table:
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, values) if index >= 0 else table.append_column(name, values)
    return table


@pytest.mark.parametrize(("columns", "loc", "message"), [
    ({"cities": pa.array([[1.0], [2.0]])}, ("body", "cities"), "integer type"),
    ({"cities": pa.array([[1], [2**53]])}, ("body", "cities", 1), "≤ 9007199254740991"),
    ({"cities": pa.array([[1], []], pa.list_(pa.int64()))}, ("body", "cities", 1), "at least 1"),
    ({"cities": pa.array([[1], None], pa.list_(pa.int64()))}, ("body", "cities", 1), "null"),
    ({"cities": pa.array([1, 2])}, ("body", "cities"), "list"),
    ({"booker_country": pa.array([1, 2])}, ("body", "booker_country"), "string"),
    ({"device_class": pa.array(["ok", "é" * 101])}, ("body", "device_class", 1), "at most 100"),
    ({"k": pa.array([0, 4])}, ("body", "k", 0), "≥ 1"),
    ({"k": pa.array([True, False])}, ("body", "k"), "integer type"),
    ({"affiliate_id": pa.array([None, -1])}, ("body", "affiliate_id", 1), "≥ 0"),
    ({"extra": pa.array([1, 2])}, ("body", "extra"), "unknown column"),
])
def test_a_broken_rule_names_the_column_and_the_first_bad_row(columns, loc, message):
    with pytest.raises(InvalidBody, match=message) as raised:
        DESTINATIONS.columns.from_arrow(_replace(table_of(TRIPS), columns))
    assert raised.value.loc == loc


def test_a_column_given_twice_is_refused():
    table = table_of(TRIPS)
    with pytest.raises(InvalidBody, match="more than once") as raised:
        DESTINATIONS.columns.from_arrow(table.append_column("k", pa.array([1, 2])))
    assert raised.value.loc == ("body", "k")


@pytest.mark.parametrize(("candidates", "loc"), [
    ([[{"property_id": 1, "price": 10.0}], [{"property_id": 2, "price": 0.0}]], ("body", "candidates", 1, "price")),
    ([[{"property_id": 1}], [{"property_id": 0}]], ("body", "candidates", 1, "property_id")),
    ([[{"property_id": 1, "colour": "red"}], None], ("body", "candidates", "colour")),
    ([[{"price": 1.0}], None], ("body", "candidates", "property_id")),
    ([[{"property_id": 1, "price": float("nan")}], None], ("body", "candidates", 0, "price")),
])
def test_nested_fields_are_checked_too(candidates, loc):
    table = table_of(SEARCHES).drop_columns(["candidates"]).append_column("candidates", pa.array(candidates))
    with pytest.raises(InvalidBody) as raised:
        RANKING.columns.from_arrow(table)
    assert raised.value.loc == loc


def test_bad_dates_and_row_counts():
    table = table_of(SEARCHES)
    with pytest.raises(InvalidBody, match="YYYY-MM-DD") as raised:
        RANKING.columns.from_arrow(table.set_column(3, "checkin", pa.array(["2026-12-18", "18/12/2026"])))
    assert raised.value.loc == ("body", "checkin", 1)
    with pytest.raises(InvalidBody, match="1 to 256 rows"):
        RANKING.columns.from_arrow(pa.concat_tables([table] * 129))
    with pytest.raises(InvalidBody, match="required") as raised:
        RANKING.columns.from_arrow(table.drop_columns(["nights"]))
    assert raised.value.loc == ("body", "nights")


def compressed(table: pa.Table, codec: str) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=codec)) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_streams_round_trip_and_bytes_that_are_not_one_are_malformed():
    batch = DESTINATIONS.columns.from_models([RecommendRequest.model_validate(t) for t in TRIPS])
    assert read_stream(write_stream(batch), LIMIT).to_batches()[0].equals(batch)
    for body in (b"", b'{"requests": []}', write_stream(batch)[:-30]):
        with pytest.raises(MalformedBody):
            read_stream(body, LIMIT)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compressed_streams_are_read_within_the_limit_on_their_decoded_size(codec):
    table = table_of(SEARCHES * 100)
    table = table.set_column(1, "booker_country", table["booker_country"].dictionary_encode())  # + a dictionary
    assert read_stream(compressed(table, codec), LIMIT).equals(table)
    in_memory = table.nbytes  # the IPC buffers are these, padded to 8 bytes
    assert read_stream(compressed(table, codec), in_memory + 1024).equals(table)
    with pytest.raises(BodyTooLarge, match="decode to"):
        read_stream(compressed(table, codec), in_memory // 2)
    zeros = compressed(pa.table({"cities": [np.zeros(2_000_000, dtype=np.int64)]}), codec)
    assert len(zeros) < LIMIT // 10
    with pytest.raises(BodyTooLarge, match=r"decode to 160000\d\d bytes; at most 1048576"):
        read_stream(zeros, LIMIT)


def test_a_compressed_buffer_declaring_a_negative_length_is_malformed():
    body = bytearray(compressed(pa.table({"k": np.arange(1000)}), "zstd"))
    at = body.index(np.int64(8000).tobytes())  # the values buffer's uncompressed length
    body[at:at + 8] = np.int64(-7).tobytes()
    with pytest.raises(MalformedBody, match="declares -7 bytes"):
        read_stream(bytes(body), LIMIT)
