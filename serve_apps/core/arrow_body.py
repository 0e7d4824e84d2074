"""Request rows as Arrow columns: one contract per request type, read from its pydantic model's JSON Schema, so an
Arrow body is held to the same rules as a JSON one (types, ranges, lengths, nulls, unknown fields) with no second
copy of them.

Every model call takes its rows as one :class:`pyarrow.RecordBatch` in the contract's canonical schema
(``int64``, ``float64``, ``string``, ``date32``, lists and lists of structs of those). A JSON body gets there
from its validated pydantic objects (:meth:`RequestColumns.from_models`); an Arrow body (``Content-Type:
application/vnd.apache.arrow.stream``, one column per field) is checked column by column and cast to the canonical
types without building a Python object per row (:meth:`RequestColumns.from_arrow`). What a column may hold:

* integers: any integer type; numbers: any integer or floating type; text: ``string``, ``large_string`` or a
  dictionary of either (valid UTF-8); dates: ``date32``, ``date64`` or ISO ``YYYY-MM-DD`` text;
* arrays: ``list``, ``large_list`` or ``fixed_size_list`` of the item type; arrays of objects: lists of structs
  with a child per field;
* nulls only where the field is nullable or has a default (a null takes it, as a JSON row leaving the field out);
  a missing column only for a field with a default (filled in).

A broken rule is :class:`~serve_apps.core.errors.InvalidBody` (422) naming the column and the first bad row
(``["body", "cities", 17]``); bytes that are not an Arrow IPC stream are :class:`MalformedBody` (400).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import flatbuffers
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from serve_apps.core.errors import BodyTooLarge, InvalidBody, MalformedBody

ARROW_STREAM = "application/vnd.apache.arrow.stream"
VERSION_METADATA = b"model_version"


@dataclass(frozen=True)
class Column:
    """One field of a request type as a column: its kind, its JSON Schema bounds, and its canonical Arrow type."""

    name: str
    kind: str  # integer | number | string | date | list | struct
    nullable: bool = False
    required: bool = True
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    max_length: int | None = None  # text
    min_items: int | None = None  # lists
    max_items: int | None = None
    items: Column | None = None  # a list's item
    fields: tuple[Column, ...] = ()  # a struct's children

    @property
    def arrow_type(self) -> pa.DataType:
        if self.kind == "list":
            return pa.list_(self.items.arrow_type)
        if self.kind == "struct":
            return pa.struct([pa.field(f.name, f.arrow_type, nullable=f.nullable) for f in self.fields])
        return _SCALAR_TYPES[self.kind]


_SCALAR_TYPES = {"integer": pa.int64(), "number": pa.float64(), "string": pa.string(), "date": pa.date32()}


class RequestColumns:
    """The columns of ``model``'s requests; at most ``max_rows`` rows in one body."""

    def __init__(self, model: type[BaseModel], max_rows: int) -> None:
        schema = model.model_json_schema()
        self.max_rows = max_rows
        self.columns = _object_columns(schema, schema.get("$defs", {}))
        self.schema = pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns])
        self._model = model

    def from_models(self, requests: Sequence[BaseModel]) -> pa.RecordBatch:
        """Validated requests (a JSON body) as columns."""
        return pa.RecordBatch.from_arrays(
            [pa.array([_plain(getattr(r, c.name)) for r in requests], type=c.arrow_type) for c in self.columns],
            schema=self.schema)

    def assemble(self, values: Mapping[str, Sequence | np.ndarray], rows: int) -> pa.RecordBatch:
        """Columns the server itself made from values it has already validated (a composition passing rows to a
        model through a handle) in the canonical schema, without the checks of :meth:`from_arrow`; a field left
        out takes its default (null if it has none)."""
        arrays = []
        for column in self.columns:
            if column.name in values:
                arrays.append(pa.array(values[column.name], type=column.arrow_type))
            else:
                arrays.append(pa.nulls(rows, column.arrow_type) if column.default is None else
                              pa.array(np.full(rows, column.default), type=column.arrow_type))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def from_arrow(self, table: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
        """An Arrow body's rows, checked and in the canonical schema."""
        repeated = [name for name in set(table.column_names) if table.column_names.count(name) > 1]
        if repeated:
            raise InvalidBody(f"column {repeated[0]!r} appears more than once", loc=("body", repeated[0]),
                              kind="duplicate_column")
        unknown = [name for name in table.column_names if name not in self.schema.names]
        if unknown:
            raise InvalidBody(f"unknown column {unknown[0]!r}; {self._model.__name__} has "
                              f"{', '.join(self.schema.names)}", loc=("body", unknown[0]), kind="extra_forbidden")
        rows = table.num_rows
        if not 1 <= rows <= self.max_rows:
            raise InvalidBody(f"a body holds 1 to {self.max_rows} rows, this one {rows}", loc=("body",),
                              kind="too_long" if rows else "too_short")
        arrays = []
        for column in self.columns:
            if column.name not in table.column_names:
                if column.required:
                    raise InvalidBody(f"column {column.name!r} is required", loc=("body", column.name),
                                      kind="missing")
                arrays.append(pa.nulls(rows, column.arrow_type) if column.default is None else
                              pa.array(np.full(rows, column.default), type=column.arrow_type))
                continue
            values = table.column(column.name)
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
            if values.null_count and column.default is not None:
                values = _with_default(values, column.default)
            arrays.append(_check(column, values, ("body", column.name), None))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def read_stream(body: bytes, max_bytes: int) -> pa.Table:
    """The rows of an Arrow IPC stream; :class:`MalformedBody` for bytes that are not one, :class:`BodyTooLarge`
    for one whose buffers would decode to more than ``max_bytes`` (a compressed stream is checked before anything
    is decompressed: an 8 MiB body of zeros could otherwise inflate to gigabytes in the replica)."""
    try:
        decoded = sum(_decoded_bytes(message) for message in pa.ipc.MessageReader.open_stream(body))
        if decoded > max_bytes:
            raise BodyTooLarge(f"the Arrow stream's buffers decode to {decoded} bytes; at most {max_bytes} are "
                               "accepted")
        with pa.ipc.open_stream(body) as reader:
            return reader.read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, struct.error, IndexError) as err:
        raise MalformedBody(f"body is not an Arrow IPC stream: {err}") from None


def _decoded_bytes(message: pa.ipc.Message) -> int:
    """The bytes a record or dictionary batch message's buffers take once read: its body, or if it is compressed
    the uncompressed length each buffer of its flatbuffer header (Arrow's ``Message.fbs``) starts with; 0 for a
    schema."""
    header = _header(message)
    if header is None:
        return 0
    if not header.Offset(_RECORD_BATCH_COMPRESSION):
        return message.body.size  # its buffers are the body itself
    vector = header.Offset(_RECORD_BATCH_BUFFERS)
    if not vector:
        return 0
    start, count = header.Vector(vector), header.VectorLen(vector)
    if start + 16 * count > len(header.Bytes):
        raise pa.ArrowInvalid(f"a header of {len(header.Bytes)} bytes declares {count} buffers")
    body, total = message.body, 0
    for i in range(count):
        offset, length = struct.unpack_from("<qq", header.Bytes, start + 16 * i)
        if offset < 0 or length < 0 or offset + length > body.size:
            raise pa.ArrowInvalid(f"buffer {i} lies outside the message body")
        if length == 0:  # an empty buffer has no length prefix
            continue
        (uncompressed,) = struct.unpack_from("<q", body, offset)  # -1: this buffer was left uncompressed
        if uncompressed < -1:
            raise pa.ArrowInvalid(f"buffer {i} declares {uncompressed} bytes")
        total += length - 8 if uncompressed == -1 else uncompressed
    return total


# Arrow's Message.fbs: vtable slots (4 + 2 x field index) and the MessageHeader union's tags.
_MESSAGE_HEADER_TYPE, _MESSAGE_HEADER = 6, 8
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3
_DICTIONARY_BATCH_DATA = 6
_RECORD_BATCH_BUFFERS, _RECORD_BATCH_COMPRESSION = 8, 10


def _header(message: pa.ipc.Message) -> flatbuffers.table.Table | None:
    """The record batch table of a record batch or dictionary batch message; None for any other message."""
    data = message.metadata.to_pybytes()
    root = flatbuffers.table.Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    kind_at = root.Offset(_MESSAGE_HEADER_TYPE)
    kind = root.Get(flatbuffers.number_types.Uint8Flags, root.Pos + kind_at) if kind_at else 0
    if kind not in (_RECORD_BATCH, _DICTIONARY_BATCH):
        return None
    header = _table_at(root, _MESSAGE_HEADER)
    return _table_at(header, _DICTIONARY_BATCH_DATA) if kind == _DICTIONARY_BATCH else header


def _table_at(table: flatbuffers.table.Table, slot: int) -> flatbuffers.table.Table:
    at = table.Offset(slot)
    if not at:
        raise pa.ArrowInvalid("a batch message without its header")
    return flatbuffers.table.Table(table.Bytes, table.Indirect(table.Pos + at))


def joined(parts: Sequence[pa.RecordBatch]) -> pa.RecordBatch:
    """Several callers' rows as one batch, for one model call."""
    return parts[0] if len(parts) == 1 else pa.concat_batches(parts)


def split(batch: pa.RecordBatch, parts: Sequence[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """The rows of ``batch`` (one per row of :func:`joined` ``parts``, in order) cut back into each part's rows."""
    starts = np.cumsum([0] + [part.num_rows for part in parts])
    return [batch.slice(start, part.num_rows) for start, part in zip(starts, parts)]


def write_stream(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _with_default(values: pa.Array, default: object) -> pa.Array:
    """A null in a field with a default is the default: a row that leaves the field out, as in JSON."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_null(values.type):
        return pa.array(np.full(len(values), default))
    return pc.fill_null(values, pa.scalar(default).cast(values.type))


def _object_columns(schema: dict, defs: dict) -> list[Column]:
    required = set(schema.get("required", ()))
    return [_column(name, spec, defs, name in required) for name, spec in schema["properties"].items()]


def _column(name: str, spec: dict, defs: dict, required: bool) -> Column:
    nullable = False
    if "anyOf" in spec:
        options = [option for option in spec["anyOf"] if option.get("type") != "null"]
        nullable = len(options) < len(spec["anyOf"])
        if len(options) != 1:
            raise TypeError(f"{name}: no column type for {spec['anyOf']}")
        spec = {**spec, **options[0]}
    if "$ref" in spec:
        spec = {**spec, **defs[spec["$ref"].rsplit("/", 1)[-1]]}
    kind = spec.get("type")
    common = {"name": name, "nullable": nullable, "required": required, "default": spec.get("default")}
    if kind == "array":
        return Column(kind="list", min_items=spec.get("minItems"), max_items=spec.get("maxItems"),
                      items=_column(name, spec["items"], defs, True), **common)
    if kind == "object":
        return Column(kind="struct", fields=tuple(_object_columns(spec, defs)), **common)
    if kind == "string":
        kind = "date" if spec.get("format") == "date" else "string"
    if kind not in _SCALAR_TYPES:
        raise TypeError(f"{name}: no column type for JSON Schema {spec}")
    return Column(kind=kind, minimum=spec.get("minimum"), maximum=spec.get("maximum"),
                  exclusive_minimum=spec.get("exclusiveMinimum"), max_length=spec.get("maxLength"), **common)


def _check(column: Column, values: pa.Array, loc: tuple, row_of: np.ndarray | None,
           child: str | None = None) -> pa.Array:
    """``values`` checked against ``column`` and cast to its canonical type. ``row_of`` maps a position in
    ``values`` to its row when they are a list's flattened items (then ``loc`` names the list); ``child`` is the
    field of a struct they are."""

    def fail(position: int | None, message: str, kind: str, field: str | None = child) -> InvalidBody:
        """The error at ``position`` of ``values``, or of the whole column (a wrong type) without one."""
        row = () if position is None else (int(position if row_of is None else row_of[position]),)
        where = (*loc, *row) + ((field,) if field else ())
        return InvalidBody(f"{'.'.join(map(str, where[1:]))}: {message}", loc=where, kind=kind)

    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_null(values.type) and column.nullable:  # a column of nulls only, as pyarrow infers it
        return pa.nulls(len(values), column.arrow_type)
    if values.null_count and not column.nullable:
        first = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise fail(first, "must not be null", "null_not_allowed")
    if column.kind in ("integer", "number"):
        return _check_numbers(column, values, fail)
    if column.kind == "string":
        return _check_text(column, values, fail)
    if column.kind == "date":
        return _check_dates(values, fail)
    if column.kind == "list":
        return _check_list(column, values, loc, row_of, fail)
    return _check_struct(column, values, loc, row_of, fail)


def _check_numbers(column: Column, values: pa.Array, fail) -> pa.Array:
    integral = pa.types.is_integer(values.type)
    if not (integral or (column.kind == "number" and pa.types.is_floating(values.type))):
        wanted = "an integer type" if column.kind == "integer" else "an integer or floating type"
        raise fail(None, f"must be {wanted}, got {values.type}", "type_error")
    numbers = pc.fill_null(values, 0 if integral else 1.0).to_numpy(zero_copy_only=False) \
        if values.null_count else values.to_numpy(zero_copy_only=False)
    present = ~values.is_null().to_numpy(zero_copy_only=False) if values.null_count else True
    rules = []
    if not integral:
        rules.append((~np.isfinite(numbers), "must be a finite number"))
    if column.minimum is not None:
        rules.append((numbers < column.minimum, f"must be ≥ {column.minimum}"))
    if column.exclusive_minimum is not None:
        rules.append((numbers <= column.exclusive_minimum, f"must be > {column.exclusive_minimum}"))
    if column.maximum is not None:
        rules.append((numbers > column.maximum, f"must be ≤ {column.maximum}"))
    for broken, message in rules:
        broken = broken & present
        if broken.any():
            first = int(np.flatnonzero(broken)[0])
            raise fail(first, f"{message}, got {numbers[first]}", "value_error")
    return values.cast(column.arrow_type)


def _check_text(column: Column, values: pa.Array, fail) -> pa.Array:
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise fail(None, f"must be string or large_string, got {values.type}", "type_error")
    try:
        values.validate(full=True)  # IPC readers do not check UTF-8
    except pa.ArrowInvalid:
        for position, value in enumerate(values.cast(pa.binary()).to_pylist()):  # error path only
            try:
                value is None or value.decode("utf-8")
            except UnicodeDecodeError:
                raise fail(position, "must be valid UTF-8 text", "string_unicode") from None
    if column.max_length is not None:
        too_long = pc.greater(pc.utf8_length(values), column.max_length)
        if pc.any(too_long).as_py():
            first = pc.index(too_long, True).as_py()
            raise fail(first, f"must have at most {column.max_length} characters", "string_too_long")
    return values.cast(pa.string())


def _check_dates(values: pa.Array, fail) -> pa.Array:
    if pa.types.is_date(values.type):
        return values.cast(pa.date32())
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise fail(None, f"must be date32, date64 or YYYY-MM-DD text, got {values.type}", "type_error")
    parsed = pc.strptime(values, format="%Y-%m-%d", unit="s", error_is_null=True)
    unparsed = pc.and_(pc.is_null(parsed), pc.is_valid(values))
    if pc.any(unparsed).as_py():
        raise fail(pc.index(unparsed, True).as_py(), "must be a date as YYYY-MM-DD", "date_from_datetime_parsing")
    return parsed.cast(pa.date32())


def _check_list(column: Column, values: pa.Array, loc: tuple, row_of: np.ndarray | None, fail) -> pa.Array:
    if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
            or pa.types.is_fixed_size_list(values.type)):
        raise fail(None, f"must be a list of {column.items.arrow_type}, got {values.type}", "type_error")
    lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
    present = ~values.is_null().to_numpy(zero_copy_only=False) if values.null_count else True
    for broken, message, kind in (
            ((lengths < (column.min_items or 0)) & present, f"must have at least {column.min_items} item(s)", "too_short"),
            ((lengths > (column.max_items or np.inf)) & present, f"must have at most {column.max_items} items",
             "too_long")):
        if np.any(broken):
            raise fail(int(np.flatnonzero(broken)[0]), message, kind)
    parents = pc.list_parent_indices(values).to_numpy(zero_copy_only=False)
    items = _check(column.items, values.flatten(), loc, parents if row_of is None else row_of[parents])
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), items, type=column.arrow_type,
                                    mask=values.is_null() if values.null_count else None)


def _check_struct(column: Column, values: pa.Array, loc: tuple, row_of: np.ndarray | None, fail) -> pa.Array:
    if not pa.types.is_struct(values.type):
        raise fail(None, f"must be a struct of {', '.join(f.name for f in column.fields)}, got {values.type}",
                   "type_error")
    names = [values.type.field(i).name for i in range(values.type.num_fields)]
    unknown = [name for name in names if name not in {f.name for f in column.fields}]
    if unknown:
        raise fail(None, f"unknown field {unknown[0]!r}", "extra_forbidden", unknown[0])
    children = dict(zip(names, values.flatten()))
    arrays = []
    for field in column.fields:
        if field.name in children:
            arrays.append(_check(field, children[field.name], loc, row_of, child=field.name))
        elif field.required:
            raise fail(None, f"field {field.name!r} is required", "missing", field.name)
        else:
            arrays.append(pa.nulls(len(values), field.arrow_type))
    return pa.StructArray.from_arrays(arrays, fields=list(column.arrow_type))


def _plain(value: object) -> object:
    """A validated field value as pyarrow takes it: nested models as dicts."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return [item.model_dump() for item in value]
    return value
