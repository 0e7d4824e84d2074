"""Field types of request bodies, for every model's schemas: what JSON Schema says, enforced as it says it.

pydantic's lax mode takes ``true`` and ``"3"`` as integers and any Python string as text; a schema-driven client
or fuzzer (and the OpenAPI document we publish) expects JSON Schema's meaning instead.
"""

import datetime as dt
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

# JSON's interoperable integer range (RFC 7493): beyond it, parsers that read numbers as doubles (JavaScript, most
# JSON Schema validators) see different values than we do. It fits the models' int64 inputs.
MAX_ID = 2**53 - 1
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def json_integer(value: object) -> object:
    """JSON Schema's integers: 3 and 3.0, not true or "3"."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"must be an integer, got {value!r}")
    return value


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"must be valid UTF-8 text, got a lone surrogate at position {err.start}") from None
    return value


def _iso_date(value: object) -> object:
    """JSON Schema's ``format: date``, "YYYY-MM-DD" (lax mode also takes 0 as 1970-01-01, and "20261218")."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        return value
    raise ValueError(f"must be a date as YYYY-MM-DD, got {value!r}")


# Constraints before the validator, or the OpenAPI document loses them; an `Integer` field takes its bounds from
# its `Field(...)` default.
Integer = Annotated[int, BeforeValidator(json_integer)]
Id = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(json_integer)]
Text = Annotated[str, Field(strict=True, max_length=100), AfterValidator(_utf8)]
Date = Annotated[dt.date, BeforeValidator(_iso_date)]
