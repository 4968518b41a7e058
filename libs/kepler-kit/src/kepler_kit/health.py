"""Liveness, readiness (database, Redis, each integration's configuration) and metrics routes."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from kepler_kit.access import require
from kepler_kit.metrics import metrics_endpoint
from kepler_kit.permissions import Action
from kepler_kit.worker import HEARTBEAT_TTL_S, heartbeat_key


class Check(BaseModel):
    name: str
    ok: bool
    detail: str | None = None


class Readiness(BaseModel):
    service: str
    ready: bool
    checks: list[Check]


ReadinessCheck = Callable[[dict[str, Any]], Awaitable[Check]]


async def database_check(state: dict[str, Any]) -> Check:
    try:
        async with state["engine"].connect() as conn:
            await conn.execute(text("SELECT 1"))
        return Check(name="database", ok=True)
    except Exception as exc:  # any failure means not ready; the reason is shown, never raised
        return Check(name="database", ok=False, detail=type(exc).__name__)


async def redis_check(state: dict[str, Any]) -> Check:
    try:
        await state["arq"].ping()
        return Check(name="redis", ok=True)
    except Exception as exc:
        return Check(name="redis", ok=False, detail=type(exc).__name__)


async def _bounded(check: ReadinessCheck, state: dict[str, Any]) -> Check:
    """A hung dependency makes readiness fail fast instead of hanging the probe, and a check that raises
    (a service's own check querying a database that is down) reports not-ready: readiness never 500s."""
    name = getattr(check, "__name__", "check").removesuffix("_check")
    try:
        return await asyncio.wait_for(check(state), 2.0)
    except TimeoutError:
        return Check(name=name, ok=False, detail="timeout")
    except Exception as exc:
        return Check(name=name, ok=False, detail=type(exc).__name__)


async def readiness(state: dict[str, Any], service: str) -> Readiness:
    checks: list[ReadinessCheck] = state["readiness_checks"]
    results = await asyncio.gather(*(_bounded(check, state) for check in checks))
    return Readiness(service=service, ready=all(c.ok for c in results), checks=list(results))


def health_router(service: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        result = await readiness(request.scope["state"], service)
        return JSONResponse(result.model_dump(), status_code=200 if result.ready else 503)

    router.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    return router


def status_router(service: str) -> APIRouter:
    """`GET /api/v1/status/<service>`: readiness as a typed, documented API (the SPA's status page)."""
    router = APIRouter(tags=["system"])

    async def service_status(request: Request) -> Readiness:
        return await readiness(request.scope["state"], service)

    router.add_api_route(
        f"/api/v1/status/{service}",
        service_status,
        methods=["GET"],
        dependencies=[require(Action.status_view)],
        name=f"get_{service.replace('-', '_')}_status",
        summary=f"Readiness of {service} and its dependencies",
        response_model=Readiness,
    )
    return router


def configured_url_check(name: str, url: str | None, purpose: str) -> ReadinessCheck:
    """An integration is ready when its URL is well-formed; unset means the feature is off, not a failure."""

    async def check(_: dict[str, Any]) -> Check:
        if not url:
            return Check(name=name, ok=True, detail=f"not configured: {purpose} disabled")
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            return Check(name=name, ok=False, detail="URL must be http(s)://host[:port]")
        return Check(
            name=name, ok=True, detail=f"{parsed.scheme}://{parsed.hostname}:{parsed.port or ''}".rstrip(":")
        )

    check.__name__ = f"{name}_check"
    return check


def worker_check(queue: str) -> ReadinessCheck:
    """Ready once the worker of `queue` has started and keeps beating (`worker.heartbeat_key`): work the
    API accepts is then picked up, rather than waiting in Redis for a worker that is still importing."""

    async def check(state: dict[str, Any]) -> Check:
        try:
            beating = await state["arq"].exists(heartbeat_key(queue))
        except Exception as exc:
            return Check(name=f"worker {queue}", ok=False, detail=type(exc).__name__)
        detail = None if beating else f"no heartbeat within {HEARTBEAT_TTL_S}s"
        return Check(name=f"worker {queue}", ok=bool(beating), detail=detail)

    check.__name__ = f"worker_{queue}_check"
    return check
