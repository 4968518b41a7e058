"""The routes the gateway answers itself: the merged OpenAPI document and the platform status."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse

from kepler_gateway.upstreams import MergedDocument, Upstreams
from kepler_kit.access import require
from kepler_kit.contracts import GATEWAY, Service
from kepler_kit.errors import Unauthorized, error_responses
from kepler_kit.health import Readiness, database_check, readiness, redis_check
from kepler_kit.permissions import Action

router = APIRouter()


class PlatformStatus(BaseModel):
    ready: bool
    services: list[Readiness]


def _upstreams(request: Request) -> Upstreams:
    upstreams: Upstreams = request.state.upstreams
    return upstreams


def _merged_document(request: Request) -> MergedDocument:
    document: MergedDocument = request.state.merged_document
    return document


UpstreamsDep = Annotated[Upstreams, Depends(_upstreams)]
MergedDocumentDep = Annotated[MergedDocument, Depends(_merged_document)]


@router.get("/openapi.json", include_in_schema=False)
async def merged_openapi(request: Request, merged: MergedDocumentDep) -> JSONResponse:
    result = await merged.get(request.app.openapi())
    return JSONResponse(result.document)


@router.get(
    "/api/v1/status",
    tags=["system"],
    summary="Readiness of every Kepler service",
    dependencies=[require(Action.status_view)],
    responses=error_responses(Unauthorized),
)
async def get_platform_status(request: Request, upstreams: UpstreamsDep) -> PlatformStatus:
    """Always 200 for a signed-in caller: a report for people and dashboards (`/readyz` is the probe),
    guarded like each service's own `/api/v1/status/<service>`."""
    state: dict[str, Any] = dict(request.scope["state"])
    own = readiness(state | {"readiness_checks": [database_check, redis_check]}, GATEWAY)
    results = await asyncio.gather(own, *(upstreams.readiness(service) for service in Service))
    return PlatformStatus(ready=all(r.ready for r in results), services=list(results))
