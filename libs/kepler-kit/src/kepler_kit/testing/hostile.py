"""Input a careless client or an attacker sends, shared by every service's hostile-input tests."""

import base64
import json
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo


def cursor(value: Any) -> str:
    """A pagination cursor as this API encodes one, around any JSON value."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# Each decodes to something no list issued: wrong types, wrong arity, not a list, not base64.
CRAFTED_CURSORS = [
    cursor([{}]),
    cursor([]),
    cursor([1, 2, 3]),
    cursor(["a\u0000"]),
    cursor({"a": 1}),
    "!!!not-base64",
]

# JSON that only looks like a boolean or an integer; each must be a 422 where a body wants the real thing.
NOT_BOOLEANS: list[Any] = ["yes", 1, "1", 0, "true"]
NOT_INTEGERS: list[Any] = ["3", 3.0, True]

_SCALARS = frozenset({"bool", "int", "float", "decimal"})


def lax_scalars(routers: Sequence[APIRouter]) -> list[str]:
    """Every request-body field that pydantic's lax mode would coerce (`"yes"` → true, `"3"` → 3): none
    should be, so a new field declared `bool` or `int` instead of `JsonBool`/`JsonInt` fails a test."""
    return [
        f"{' '.join(sorted(route.methods or ()))} {route.path}: {where}"
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for field in _body_fields(route.dependant)
        for where in _lax(_core_schema(field.field_info), field.name)
    ]


def _body_fields(dependant: Dependant) -> Iterator[Any]:
    yield from dependant.body_params
    for sub in dependant.dependencies:
        yield from _body_fields(sub)


def _core_schema(info: FieldInfo) -> Any:
    """The schema the body is validated with, constraints (a `Strict()` on a bare body value) included."""
    annotated: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotated).core_schema


def _lax(schema: Any, where: str) -> Iterator[str]:
    """Walks a pydantic core schema; names each bool/number node without `strict` by model and field."""
    if isinstance(schema, list):
        for item in schema:
            yield from _lax(item, where)
    if not isinstance(schema, dict):
        return
    if schema.get("type") in _SCALARS and not schema.get("strict"):
        yield where
    if schema.get("type") == "model":
        where = schema["cls"].__name__
    for key, value in schema.items():
        if key == "fields" and isinstance(value, dict):
            for name, field in value.items():
                yield from _lax(field, f"{where}.{name}")
        elif key != "serialization":
            yield from _lax(value, where)
