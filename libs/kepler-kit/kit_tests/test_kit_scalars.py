"""JSON booleans and integers in request bodies: what `JsonBool`/`JsonInt` refuse, and that `lax_scalars`
finds every body field still open to pydantic's lax coercion (each service's hostile-input test uses it)."""

from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, TypeAdapter, ValidationError

from kepler_kit.scalars import JsonBool, JsonInt
from kepler_kit.testing.hostile import NOT_BOOLEANS, NOT_INTEGERS, lax_scalars


class Inner(BaseModel):
    port: int
    strict_port: JsonInt


class Outer(BaseModel):
    flag: bool | None = None
    strict_flag: JsonBool = False
    inner: list[Inner] = []


router = APIRouter()


@router.post("/outer")
async def outer(body: Outer) -> None: ...


@router.post("/bare")
async def bare(
    count: Annotated[int, Body(embed=True)], confirm: Annotated[bool, Query()] = False
) -> None: ...


@router.post("/bare-strict")
async def bare_strict(count: Annotated[JsonInt, Body(embed=True)]) -> None: ...


def test_lax_scalars_names_each_lax_body_field_and_nothing_else() -> None:
    """Nested models, optional fields and bare body values are found; query parameters are not body fields."""
    assert lax_scalars([router]) == [
        "POST /outer: Outer.flag",
        "POST /outer: Inner.port",
        "POST /bare: count",
    ]


@pytest.mark.parametrize(("kind", "values"), [(JsonBool, NOT_BOOLEANS), (JsonInt, NOT_INTEGERS)])
def test_look_alikes_are_refused_in_python_mode(kind: Any, values: list[Any]) -> None:
    """Python mode is how FastAPI validates a decoded JSON body."""
    for value in values:
        with pytest.raises(ValidationError):
            TypeAdapter(kind).validate_python(value)


def test_the_real_json_values_pass() -> None:
    assert TypeAdapter(JsonBool).validate_python(False) is False
    assert TypeAdapter(JsonInt).validate_python(3) == 3


def test_the_json_schema_is_the_plain_type() -> None:
    """Clients see `boolean` and `integer`, as before."""
    assert TypeAdapter(JsonBool).json_schema() == {"type": "boolean"}
    assert TypeAdapter(JsonInt).json_schema() == {"type": "integer"}
