"""A tiny service built with the kit, used to test the kit's behaviour through HTTP."""

import uuid
from datetime import UTC, datetime

from arq.connections import ArqRedis
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import Select, select

from kepler_db import models
from kepler_kit.db import DbSession
from kepler_kit.errors import Conflict
from kepler_kit.jobs import Sweep, WorkerContext, after_commit, enqueue_after_commit, job, session_scope
from kepler_kit.service_app import create_service_app
from kepler_kit.settings import KeplerSettings

router = APIRouter(prefix="/api/v1/kit")
JOB = "activate"
NOTIFIED: list[str] = []  # what the after-commit callbacks of `/notify/{name}` were told


class RawName(BaseModel):
    name: str  # deliberately unconstrained: what Postgres does with it is the test


async def _store(session: DbSession, name: str) -> str:
    namespace = _namespace(name)
    session.add(namespace)
    await session.flush()
    return str(namespace.id)


def _namespace(name: str) -> models.Namespace:
    return models.Namespace(name=name, status=models.NamespaceStatus.provisioning)


@router.post("/ok/{name}", status_code=201)
async def create_ok(name: str, session: DbSession) -> dict[str, str]:
    namespace = _namespace(name)
    session.add(namespace)
    await session.flush()
    enqueue_after_commit(session, JOB, str(namespace.id))
    return {"id": str(namespace.id)}


@router.post("/notify/{name}", status_code=201)
async def create_and_notify(name: str, session: DbSession) -> dict[str, str]:
    """An enqueue, then a callback: the callback must run even when the enqueue fails."""
    namespace_id = await _store(session, name)
    enqueue_after_commit(session, JOB, namespace_id)

    async def notify(_: ArqRedis) -> None:
        NOTIFIED.append(name)

    after_commit(session, notify)
    return {"id": namespace_id}


@router.post("/raw", status_code=201)
async def create_raw(body: RawName, session: DbSession) -> dict[str, str]:
    return {"id": await _store(session, body.name)}


@router.post("/conflict/{name}")
async def create_then_fail(name: str, session: DbSession) -> None:
    session.add(_namespace(name))
    await session.flush()
    enqueue_after_commit(session, JOB, str(uuid.uuid4()))
    raise Conflict("changed my mind")


@router.post("/commit-fails", status_code=201)
async def commit_fails(session: DbSession) -> dict[str, str]:
    """The foreign key breaks only at commit: a 2xx here would be a lie."""
    session.add(models.App(namespace_id=uuid.uuid4(), name="x", git_url="https://g/x.git", ports=[]))
    enqueue_after_commit(session, JOB, str(uuid.uuid4()))
    return {"status": "created"}


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("password=hunter2 in a stack trace")


@router.get("/items/{item_id}")
async def get_item(item_id: int, limit: int = 10) -> dict[str, int]:
    return {"item_id": item_id, "limit": limit}


@job
async def activate(ctx: WorkerContext, namespace_id: str) -> None:
    async with session_scope(ctx) as session:
        namespace = await session.get(models.Namespace, uuid.UUID(namespace_id))
        if namespace is not None:
            namespace.status = models.NamespaceStatus.active


@job
async def activate_after_outage(ctx: WorkerContext, namespace_id: str) -> int:
    """Its first try meets Postgres down (as a job would during an outage); returns the try that worked."""
    if ctx.get("job_try", 1) == 1:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    await activate(ctx, namespace_id)
    return ctx.get("job_try", 1)


def pending_namespaces(cutoff: datetime) -> Select[uuid.UUID]:
    return select(models.Namespace.id).where(
        models.Namespace.status == models.NamespaceStatus.provisioning, models.Namespace.created_at < cutoff
    )


SWEEPS = [Sweep(JOB, pending_namespaces)]
NOW = datetime.now(UTC)


def create_kit_app(settings: KeplerSettings) -> FastAPI:
    return create_service_app(service="kit-test", title="kit", settings=settings, routers=[router])
