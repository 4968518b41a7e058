"""Readiness that includes the worker: `/readyz` answers 200 only once the queue's worker is running."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from arq.worker import func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_kit.jobs import WorkerContext, redis_settings
from kepler_kit.settings import KeplerSettings
from kepler_kit.testing.services import service_client
from kepler_kit.worker import HEARTBEAT_TTL_S, KeplerWorker, heartbeat_key

from .kit_app import create_kit_app


async def noop(ctx: WorkerContext) -> None:
    """arq refuses a worker with no function."""


@contextlib.asynccontextmanager
async def beating_worker(arq: ArqRedis, redis_url: str, queue_name: str) -> AsyncIterator[None]:
    """A worker of `queue_name`, entered once its first heartbeat is in Redis."""
    worker = KeplerWorker(
        functions=[func(noop, name="noop")],  # type: ignore[arg-type]
        redis_settings=redis_settings(redis_url),
        queue_name=queue_name,
        handle_signals=False,
    )
    running = asyncio.create_task(worker.main())
    try:
        while not await arq.exists(heartbeat_key(queue_name)):
            if running.done():
                await running  # raises why the worker stopped
                raise AssertionError("the worker stopped before its first heartbeat")
            await asyncio.sleep(0.02)
        yield
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await worker.pool.aclose()  # not worker.close(): it calls redis' deprecated close()


@pytest.fixture
async def client(
    settings_overrides: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    queue_name: str,
) -> AsyncIterator[httpx.AsyncClient]:
    """A service whose readiness requires its worker, as under `make run`."""
    settings = KeplerSettings(**settings_overrides, readiness_worker_queues=[queue_name])
    async with service_client(create_kit_app(settings), sessionmaker=sessionmaker, arq=arq) as client:
        yield client


async def worker_check(client: httpx.AsyncClient, queue_name: str) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    checks = {c["name"]: c for c in response.json()["checks"]}
    return response.status_code, checks[f"worker {queue_name}"]


class TestWorkerReadiness:
    async def test_not_ready_until_the_worker_beats_then_ready(
        self, client: httpx.AsyncClient, arq: ArqRedis, redis_url: str, queue_name: str
    ) -> None:
        """`make run` said "ready" while the workers were still importing: a job accepted then waited."""
        status, check = await worker_check(client, queue_name)
        assert (status, check["ok"]) == (503, False)
        assert check["detail"] == f"no heartbeat within {HEARTBEAT_TTL_S}s"
        async with beating_worker(arq, redis_url, queue_name):
            status, check = await worker_check(client, queue_name)
            assert (status, check["ok"]) == (200, True)

    async def test_a_stopped_workers_heartbeat_expires(
        self, arq: ArqRedis, redis_url: str, queue_name: str
    ) -> None:
        """Nothing deletes the key when a worker dies by SIGKILL: only its expiry makes readiness fail."""
        async with beating_worker(arq, redis_url, queue_name):
            pass
        assert 0 < await arq.ttl(heartbeat_key(queue_name)) <= HEARTBEAT_TTL_S

    async def test_readiness_is_the_services_own_unless_configured(
        self,
        settings_overrides: dict[str, Any],
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
    ) -> None:
        """Default off: in compose and Kubernetes an API pod must not leave the load balancer because
        its worker (another pod) restarts."""
        app = create_kit_app(KeplerSettings(**settings_overrides))
        async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
            response = await client.get("/readyz")
        assert response.status_code == 200
        assert not [c for c in response.json()["checks"] if c["name"].startswith("worker")]
