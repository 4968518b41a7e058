"""Jobs survive losing Redis (the sweeper re-creates work for rows left pending) and wake idle workers."""

import asyncio
import contextlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Job
from arq.worker import func, get_kwargs
from sqlalchemy import Select, false, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import models
from kepler_kit.jobs import JobRequest, Sweep, WorkerContext, enqueue, redis_settings, sweep, wake_channel
from kepler_kit.settings import KeplerSettings
from kepler_kit.testing.services import run_burst_worker
from kepler_kit.worker import KeplerWorker, worker_settings

from .kit_app import SWEEPS, activate, activate_after_outage, pending_namespaces


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


class TestTransientFailures:
    async def test_job_failing_on_a_connection_error_is_retried_and_succeeds(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        redis_url: str,
        queue_name: str,
    ) -> None:
        """A Postgres blip must not leave the work to the sweeper: the job itself comes back shortly."""
        namespace = await add_pending(session, "blip", timedelta(0))
        request = JobRequest("activate_after_outage", (str(namespace.id),), queue_name)
        await enqueue(arq, request, queue_name)
        await run_burst_worker(
            [activate_after_outage], redis_url=redis_url, queue_name=queue_name, sessionmaker=sessionmaker
        )
        await session.refresh(namespace)
        assert namespace.status is models.NamespaceStatus.active  # its first try always fails


class TestSweepRescue:
    async def test_rescued_job_carries_the_request_id_that_created_the_work(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        queue_name: str,
    ) -> None:
        """The re-created job logs the original request's id, so the two can be tied together."""
        namespace = await add_pending(session, "lost", timedelta(minutes=5))

        def pending(cutoff: datetime) -> Select[Any, Any]:
            return select(
                pending_namespaces(cutoff).subquery().c.id, literal("req-origin").label("request_id")
            )

        ctx = context(arq, queue_name, sessionmaker)
        ctx["sweeps"] = [Sweep("activate", pending)]
        assert await sweep(ctx) == 1
        info = await Job(f"activate:{namespace.id}", arq).info()
        assert info is not None
        assert (info.args, info.kwargs) == ((str(namespace.id),), {"request_id": "req-origin"})


def _nothing_pending(_: datetime) -> Select[Any]:
    return select(models.Namespace.id).where(false())


class TestSweepsOfSeveralServices:
    async def test_each_service_sweeps_every_tick_on_one_redis(
        self, arq: ArqRedis, database_url: str, redis_url: str
    ) -> None:
        """Two services' real workers share one Redis: each tick must run both services' sweeps, not
        whichever worker claimed a shared cron job id first."""
        suffix = secrets.token_hex(4)
        settings = KeplerSettings(database_url=database_url, redis_url=redis_url, sweep_interval_seconds=1)
        workers = [
            KeplerWorker(
                **{
                    **get_kwargs(worker_settings(f"{name}-{suffix}", settings, [activate], [rule])),
                    "handle_signals": False,
                }
            )
            for name, rule in (
                ("svc-a", Sweep("activate", _nothing_pending)),
                ("svc-b", Sweep("b", _nothing_pending)),
            )
        ]
        running = [asyncio.create_task(worker.main()) for worker in workers]
        try:
            await asyncio.wait_for(_both_swept_one_tick(arq, suffix, running), timeout=30)
        finally:
            for task in running:
                task.cancel()
            for task, worker in zip(running, workers, strict=True):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                assert worker.on_shutdown is not None
                await worker.on_shutdown(worker.ctx)  # its engine: not worker.close(), see above
                await worker.pool.aclose()


async def _both_swept_one_tick(arq: ArqRedis, suffix: str, running: list[asyncio.Task[None]]) -> None:
    """Waits for a tick whose sweep result exists for both services (arq keeps each run's result)."""
    while True:
        for task in running:
            if task.done():
                task.result()  # a worker that died says why
        ticks = []
        for name in ("svc-a", "svc-b"):
            prefix = f"arq:result:cron:sweep:{name}-{suffix}:"
            keys = [key.decode() async for key in arq.scan_iter(f"{prefix}*")]
            ticks.append({key.removeprefix(prefix) for key in keys})
        if ticks[0] & ticks[1]:
            return
        await asyncio.sleep(0.2)
