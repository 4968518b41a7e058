"""Cursor pagination: an opaque cursor holding the last row's sort key; stable under inserts."""

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from kepler_kit.errors import BadRequest

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """Subclass per item type (`class AppPage(Page[App])`) so OpenAPI clients get clean class names."""

    items: list[T]

    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last"
    )


class PageRequest(BaseModel):
    limit: int
    after: list[Any] | None


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("The cursor is not one this API issued.") from exc
    if not isinstance(key, list):
        raise BadRequest("The cursor is not one this API issued.")
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
