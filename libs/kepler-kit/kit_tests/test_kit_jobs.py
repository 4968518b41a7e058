"""Jobs survive losing Redis (the sweeper re-creates work for rows left pending) and wake idle workers."""

import asyncio
import contextlib
from datetime import timedelta

from arq.connections import ArqRedis
from arq.worker import func
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import models
from kepler_kit.jobs import JobRequest, WorkerContext, enqueue, redis_settings, sweep, wake_channel
from kepler_kit.testing.services import run_burst_worker
from kepler_kit.worker import KeplerWorker

from .kit_app import SWEEPS, activate


async def add_pending(session: AsyncSession, name: str, age: timedelta) -> models.Namespace:
    namespace = models.Namespace(name=name, status=models.NamespaceStatus.provisioning)
    session.add(namespace)
    await session.flush()
    await session.execute(
        update(models.Namespace)
        .where(models.Namespace.id == namespace.id)
        .values(created_at=models.Namespace.created_at - age)
    )
    await session.commit()
    return namespace


def context(arq: ArqRedis, queue_name: str, sessionmaker: async_sessionmaker[AsyncSession]) -> WorkerContext:
    return {"redis": arq, "queue_name": queue_name, "sessionmaker": sessionmaker, "sweeps": SWEEPS}


class TestSweeper:
    async def test_flushall_loses_no_work(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        redis_url: str,
        queue_name: str,
    ) -> None:
        namespace = await add_pending(session, "lost", timedelta(minutes=5))
        await enqueue(arq, JobRequest("activate", (str(namespace.id),), queue_name), queue_name)
        await arq.flushall()

        assert await sweep(context(arq, queue_name, sessionmaker)) == 1
        done = await run_burst_worker(
            [activate], redis_url=redis_url, queue_name=queue_name, sessionmaker=sessionmaker
        )
        assert done == 1
        await session.refresh(namespace)
        assert namespace.status is models.NamespaceStatus.active

    async def test_no_duplicate_while_job_is_queued(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        queue_name: str,
    ) -> None:
        namespace = await add_pending(session, "queued", timedelta(minutes=5))
        await enqueue(arq, JobRequest("activate", (str(namespace.id),), queue_name), queue_name)
        assert await sweep(context(arq, queue_name, sessionmaker)) == 0
        assert await arq.zcard(queue_name) == 1

    async def test_recent_rows_are_left_to_their_job(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        queue_name: str,
    ) -> None:
        await add_pending(session, "fresh", timedelta(0))
        assert await sweep(context(arq, queue_name, sessionmaker)) == 0


class TestWakeUp:
    async def test_an_enqueued_job_wakes_an_idle_worker(
        self, arq: ArqRedis, redis_url: str, queue_name: str
    ) -> None:
        """The worker polls only every 10 minutes here: the job can only start this soon if woken."""
        ran = asyncio.Event()

        async def touch(ctx: WorkerContext, value: str) -> None:
            ran.set()

        worker = KeplerWorker(
            functions=[func(touch, name="touch")],  # type: ignore[arg-type]
            redis_settings=redis_settings(redis_url),
            queue_name=queue_name,
            poll_delay=600,
            handle_signals=False,
            keep_result=0,
        )
        running = asyncio.create_task(worker.main())
        try:
            while (await arq.pubsub_numsub(wake_channel(queue_name)))[0][1] == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # it subscribes after its first (empty) look at the queue
            assert await enqueue(arq, JobRequest("touch", (queue_name,), queue_name), None)
            await asyncio.wait_for(ran.wait(), timeout=30)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await worker.pool.aclose()  # not worker.close(): it calls redis' deprecated close()
