"""Delivery metrics endpoints: thin, typed, every error and permission declared."""

import re
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BeforeValidator, WithJsonSchema

from kepler_app_service.dependencies import AppInPath, NamespaceInPath
from kepler_app_service.stats import service
from kepler_app_service.stats.schemas import AppStats, NamespaceStats, StatsWindow
from kepler_kit.access import Access, require
from kepler_kit.db import DbSession
from kepler_kit.errors import NAMESPACE_DENIALS, error_responses
from kepler_kit.permissions import Action

router = APIRouter(prefix="/api/v1/namespaces/{namespace}")
DENIED = NAMESPACE_DENIALS
_LENGTH = re.compile(r"^([1-9][0-9]{0,2})([hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def _length(value: object) -> timedelta:
    """`7d`, `12h`, `2w`: a short, bounded form (a number of at most three digits), nothing else."""
    found = _LENGTH.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError("must be a number of hours, days or weeks, e.g. `7d`, `30d`, `12h`, `2w`")
    length = int(found[1]) * _UNITS[found[2]]
    if length > service.LONGEST_WINDOW:
        raise ValueError(f"may be at most {service.LONGEST_WINDOW.days} days")
    return length


Length = Annotated[
    timedelta,
    BeforeValidator(_length),
    WithJsonSchema({"type": "string", "pattern": _LENGTH.pattern, "examples": ["7d", "30d", "90d"]}),
]


def _window(
    window: Annotated[
        Length | None, Query(description="The window's length, ending at `until` (default 30d)")
    ] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Start of the window (instead of `window`)")
    ] = None,
    until: Annotated[AwareDatetime | None, Query(description="End of the window (default now)")] = None,
) -> StatsWindow:
    return service.window_of(window, since, until)


WindowInQuery = Annotated[StatsWindow, Depends(_window)]


@router.get(
    "/stats",
    tags=["namespaces"],
    responses=error_responses(*DENIED),
    summary="Delivery metrics of a namespace, per app",
)
async def get_namespace_stats(
    namespace: NamespaceInPath,
    window: WindowInQuery,
    session: DbSession,
    _: Access = require(Action.namespace_view),
) -> NamespaceStats:
    return await service.namespace_stats(session, namespace, window)


@router.get(
    "/apps/{app}/stats",
    tags=["apps"],
    responses=error_responses(*DENIED),
    summary="Delivery metrics of an app",
)
async def get_app_stats(
    namespace: NamespaceInPath,
    app: AppInPath,
    window: WindowInQuery,
    session: DbSession,
    _: Access = require(Action.app_view),
) -> AppStats:
    return await service.app_stats(session, namespace, app, window)
