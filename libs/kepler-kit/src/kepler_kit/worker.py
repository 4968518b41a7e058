"""arq workers for the services: their settings (engine per worker, the sweeper on a cron, sane
retention) and the worker that runs them, woken as soon as a job is enqueued.

    python -m kepler_kit.worker kepler_app_service.tasks.WorkerSettings [--burst]
"""

import asyncio
import contextlib
import importlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import Any, cast

from arq.cron import CronJob, cron
from arq.typing import WorkerCoroutine
from arq.worker import Worker, get_kwargs
from redis.exceptions import RedisError

from kepler_kit.contracts import service_queue
from kepler_kit.db import create_sessionmaker, create_settings_engine
from kepler_kit.events.consumers import Consumer, run_consumers
from kepler_kit.jobs import (
    MAX_TRIES,
    Sweep,
    WorkerContext,
    redis_settings,
    sweep,
    wake_channel,
)
from kepler_kit.logging import configure_logging, get_logger
from kepler_kit.settings import KeplerSettings

log = get_logger(__name__)
IDLE_POLL_S = 0.5  # how often an idle worker looks at its queue unwoken (deferred jobs and retries)
BUSY_POLL_S = 0.05  # with every job slot taken: a slot that frees picks up queued work this soon
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 15  # three missed beats: the worker is gone (or its event loop is stuck)


def heartbeat_key(queue: str) -> str:
    """Set by a started worker of `queue` every HEARTBEAT_INTERVAL_S, expiring after HEARTBEAT_TTL_S:
    readiness can require it (`health.worker_check`). arq's own health-check key is written only every
    `health_check_interval` and lives one second longer, too short a margin to probe."""
    return f"{queue}:kepler-heartbeat"


def sweep_job_name(service: str) -> str:
    """One cron job per service. arq names a unique cron run `<name>:<tick>`: under one shared name the
    services' workers on one Redis would race for each tick and only the winner's sweep rules would run."""
    return f"cron:sweep:{service}"


def sweep_seconds(interval: int) -> set[int]:
    """The seconds of each minute the sweeper runs at, `interval` apart."""
    return set(range(0, 60, interval))


def built_on_first_use(module: str, factory: Callable[[], type]) -> Callable[[str], type]:
    """A module `__getattr__` serving `WorkerSettings` from `factory`, called once when a worker first asks:
    importing a service's jobs then reads no environment (settings come from factories, never at import),
    while `python -m kepler_kit.worker kepler_x.tasks.WorkerSettings` and `arq --check` keep their path."""
    build = cache(factory)

    def attribute(name: str) -> type:
        if name == "WorkerSettings":
            return build()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return attribute


def worker_settings(
    service: str,
    settings: KeplerSettings,
    functions: Sequence[Callable[..., Any]],
    sweeps: Sequence[Sweep] = (),
    queue_name: str | None = None,
    resources: Callable[[WorkerContext], Awaitable[None]] | None = None,
    release: Callable[[WorkerContext], Awaitable[None]] | None = None,
    max_jobs: int = 10,
    consumers: Sequence[Consumer] = (),
    crons: Sequence[CronJob] = (),
) -> type:
    """The settings class `KeplerWorker` runs (`python -m kepler_kit.worker kepler_x.tasks.WorkerSettings`).

    `max_jobs`: jobs that mostly wait on the network (following a rollout) deserve many slots.
    `consumers`: the service's consumers of the event log, followed for as long as the worker runs.
    `crons`: the service's periodic jobs (arq `cron(...)`, each `unique`: one run per tick across workers)."""
    queue = settings.queue_name or queue_name or service_queue(service)

    async def on_startup(ctx: WorkerContext) -> None:
        configure_logging(f"{service}-worker", settings.log_level, settings.log_json)
        engine = create_settings_engine(settings, pool_size=2)
        ctx.update({"service": service, "queue_name": queue, "sweeps": sweeps, "settings": settings})

        ctx["sessionmaker"] = create_sessionmaker(engine)
        ctx["engine"] = engine  # type: ignore[typeddict-unknown-key]
        if resources is not None:
            await resources(ctx)  # the service's integration clients
        if consumers:
            task = asyncio.create_task(run_consumers(ctx["sessionmaker"], settings.database_url, consumers))
            ctx["consumers"] = task
        await sweep(ctx)

    async def on_shutdown(ctx: WorkerContext) -> None:
        try:
            await _stop(ctx.get("consumers"))
            if release is not None:
                await release(ctx)
        finally:  # a failing release must not also leak the database pool
            await ctx["engine"].dispose()  # type: ignore[typeddict-item]

    attrs: dict[str, Any] = {
        "functions": list(functions),
        # Always registered: arq refuses a worker with nothing to run, and an empty sweep is free.
        "cron_jobs": [
            cron(
                cast(WorkerCoroutine, sweep),
                name=sweep_job_name(service),
                second=sweep_seconds(settings.sweep_interval_seconds),
                run_at_startup=False,
                unique=True,
                keep_result=60,  # the last minute of sweeps (how many jobs each re-created), in Redis
            ),
            *crons,
        ],
        "queue_name": queue,
        "redis_settings": redis_settings(settings.redis_url),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "keep_result": 30,
        "max_jobs": max_jobs,
        "poll_delay": IDLE_POLL_S,
        "health_check_interval": 30,
        "max_tries": MAX_TRIES,
        "job_timeout": 900,
        "handle_signals": True,
    }
    return type("WorkerSettings", (), attrs)


async def _stop(task: asyncio.Task[None] | None) -> None:
    """Stops the consumers' task; one that had failed is logged, not raised into the shutdown."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("event_consumers_failed")


class KeplerWorker(Worker):
    """arq's worker, woken by a publication on its queue's wake channel (`jobs.enqueue` sends one), so a
    job starts within a Redis round trip instead of up to a poll interval later. It still polls every
    `poll_delay` when idle: a wake-up lost with a Redis hiccup delays a job, it never loses one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._idle_poll_s, self.poll_delay_s = self.poll_delay_s, 0.0  # arq's own loop no longer sleeps
        self._woken = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._beaten_at: float | None = None

    async def _poll_iteration(self) -> None:
        await super()._poll_iteration()
        await self._heartbeat()
        if self.burst or self._idle_poll_s <= 0:
            return
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen())
        wait = BUSY_POLL_S if self.job_counter >= self.max_jobs else self._idle_poll_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), min(wait, self._idle_poll_s))
        self._woken.clear()

    async def _heartbeat(self) -> None:
        """Runs from the poll loop, so it starts after `on_startup` and stops when the loop does."""
        now = time.monotonic()
        if self._beaten_at is not None and now - self._beaten_at < HEARTBEAT_INTERVAL_S:
            return
        self._beaten_at = now
        await self.pool.set(heartbeat_key(self.queue_name), str(time.time()), ex=HEARTBEAT_TTL_S)

    async def _listen(self) -> None:
        while True:
            try:
                async with self.pool.pubsub() as pubsub:
                    await pubsub.subscribe(wake_channel(self.queue_name))
                    self._woken.set()  # a wake-up may have gone by while (re)subscribing
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._woken.set()
            except (RedisError, OSError):
                await asyncio.sleep(1)

    async def close(self) -> None:
        """arq's close(), except that the service's `on_shutdown` and the pool's closing also happen when
        Redis is gone (the usual reason a worker stops on its own): arq stops at its first Redis error, and
        the cluster clients and database pool were then left unclosed ("Unclosed client session")."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if self._pool is None:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.pool.delete(self.health_check_key)
        try:
            if self.on_shutdown is not None:
                await self.on_shutdown(self.ctx)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self.pool.aclose(close_connection_pool=True)
            self._pool = None

    async def main(self) -> None:
        try:
            await super().main()
        finally:
            if self._listener is not None:
                self._listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._listener


def configure_worker_logging() -> None:
    """arq's own lines (job started, finished, retried) in the process's one format, before any is written:
    JSON like every other line when KEPLER_LOG_JSON is on (arq's default config printed plain text)."""
    settings = KeplerSettings()
    configure_logging("worker", settings.log_level, settings.log_json)


def create_worker(settings_path: str, **overrides: Any) -> KeplerWorker:
    """The worker for `package.module.WorkerSettings`."""
    module, _, name = settings_path.rpartition(".")
    settings = getattr(importlib.import_module(module), name)
    return KeplerWorker(**{**get_kwargs(settings), **overrides})


def main(argv: Sequence[str]) -> None:
    paths = [arg for arg in argv if not arg.startswith("--")]
    if len(paths) != 1:
        raise SystemExit("usage: python -m kepler_kit.worker PKG.tasks.WorkerSettings [--burst]")
    configure_worker_logging()
    create_worker(paths[0], burst="--burst" in argv).run()


if __name__ == "__main__":
    main(sys.argv[1:])
