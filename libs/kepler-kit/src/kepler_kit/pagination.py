"""Keyset pagination: an opaque cursor holding the last row's sort key; stable under inserts.

A list declares its key's types when it reads the cursor (`page.key(datetime, uuid.UUID)`,
`page.key(str)`): a cursor that does not decode to exactly those values, crafted or stale, is a 400
problem and never reaches a query.
"""

import base64
import binascii
import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, overload

from fastapi import Depends, Query
from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError, conint
from pydantic_core import to_jsonable_python

from kepler_kit.errors import BadRequest
from kepler_kit.text import Line

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
_NOT_OURS = "The cursor is not one this API issued."
# Key types as Postgres holds them; plain `int` and `str` keys are read as these.
Int32 = conint(ge=-(2**31), le=2**31 - 1)  # an `integer` column
Int64 = conint(ge=-(2**63), le=2**63 - 1)  # a `bigint` column
_AS_STORED: dict[Any, Any] = {int: Int64, str: Line, datetime: AwareDatetime}  # timestamptz: never naive


class Page(BaseModel, Generic[T]):
    """Subclass per item type (`class AppPage(Page[App])`) so OpenAPI clients get clean class names."""

    items: list[T]

    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last"
    )


class PageRequest(BaseModel):
    limit: int
    after: list[Any] | None = Field(description="The cursor's raw values: read them with `key(...)`")

    @overload
    def key(self, first: type[A], /) -> tuple[A] | None: ...
    @overload
    def key(self, first: type[A], second: type[B], /) -> tuple[A, B] | None: ...
    def key(self, *types: Any) -> tuple[Any, ...] | None:
        """The cursor's sort key as the list's own types, or None on the first page; 400 if it is not one."""
        if self.after is None:
            return None
        try:
            # strict JSON: a number is not a time, a string is not a number
            return _key_adapter(types).validate_json(json.dumps(self.after), strict=True)
        except ValidationError as exc:
            raise BadRequest(_NOT_OURS) from exc


@functools.cache
def _key_adapter(types: tuple[Any, ...]) -> TypeAdapter[tuple[Any, ...]]:
    shape: Any = tuple.__class_getitem__(tuple(_AS_STORED.get(t, t) for t in types))
    return TypeAdapter(shape)  # a tuple: exactly this many values, each of its type


def encode_cursor(key: list[Any]) -> str:
    """`key` may hold datetimes and UUIDs: JSON strings in the cursor, read back by `PageRequest.key`."""
    text = json.dumps(to_jsonable_python(key), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(_NOT_OURS) from exc
    if not isinstance(key, list):
        raise BadRequest(_NOT_OURS)
    return key


def _page_request(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page")
    ] = None,
) -> PageRequest:
    return PageRequest(limit=limit, after=decode_cursor(cursor) if cursor else None)


PageParams = Annotated[PageRequest, Depends(_page_request)]


R = TypeVar("R")


P = TypeVar("P", bound=Page[Any])


def page_of(
    page: type[P], rows: list[R], limit: int, key: Callable[[R], list[Any]], out: Callable[[R], Any]
) -> P:
    """`rows` was fetched with limit + 1 so we know whether another page exists without counting."""
    items = rows[:limit]
    cursor = encode_cursor(key(items[-1])) if len(rows) > limit else None
    return page(items=[out(row) for row in items], next_cursor=cursor)
