from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.errors import DataError
from recsys.synthetic_trips import TripsSpec, write_trips
from recsys.trips import TRIP_SCHEMA
from recsys.trips import check_trip_schema
from recsys.tables import find_parquet_files


def test_finds_every_part_and_counts_reservations(tmp_path):
    write_trips(TripsSpec(trips=50, trips_per_file=20), str(tmp_path / "trips"))
    files = find_parquet_files(str(tmp_path / "trips"), check_trip_schema)
    assert [p.rsplit("/", 1)[-1] for p in files.paths] == ["part-00000.parquet", "part-00001.parquet",
                                                          "part-00002.parquet"]
    assert files.rows == pq.read_table(tmp_path / "trips").num_rows


def test_a_missing_path_is_reported(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: data path does not exist"):
        find_parquet_files(str(tmp_path / "nowhere"), check_trip_schema)


def test_a_path_without_parquet_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"empty: no .parquet files under this path"):
        find_parquet_files(str(tmp_path / "empty"), check_trip_schema)


def test_files_without_rows_are_reported(tmp_path):
    (tmp_path / "trips").mkdir()
    pq.write_table(TRIP_SCHEMA.empty_table(), tmp_path / "trips" / "part-0.parquet")
    with pytest.raises(DataError, match=r"trips: the Parquet files hold no rows"):
        find_parquet_files(str(tmp_path / "trips"), check_trip_schema)


@pytest.mark.parametrize(("column", "replacement", "message"), [
    ("city_id", pa.array(["Paris"]), "column 'city_id' has type string, expected int64"),
    ("utrip_id", None, "column 'utrip_id' is missing"),
    ("checkin", pa.array(["2016-01-01"]), "column 'checkin' has type string, expected date32[day]"),
], ids=["wrong-type", "missing-column", "dates-as-strings"])
def test_the_wrong_schema_names_the_file_and_column(tmp_path, column, replacement, message):
    write_trips(TripsSpec(trips=1), str(tmp_path / "trips"))
    good = pq.read_table(tmp_path / "trips").slice(0, 1)
    index = good.schema.get_field_index(column)
    bad = good.remove_column(index) if replacement is None else good.set_column(index, column, replacement)
    pq.write_table(bad, tmp_path / "trips" / "part-00001.parquet")
    with pytest.raises(DataError, match=rf"trips/part-00001.parquet: {re.escape(message)}"):
        find_parquet_files(str(tmp_path / "trips"), check_trip_schema)


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    write_trips(TripsSpec(trips=1), str(tmp_path / "trips"))
    (tmp_path / "trips" / "part-00009.parquet").write_bytes(b"definitely not parquet")
    with pytest.raises(DataError, match=r"part-00009.parquet: not a readable Parquet file"):
        find_parquet_files(str(tmp_path / "trips"), check_trip_schema)
