"""arq jobs the Kepler way: rows in Postgres are the truth, Redis only carries ids.

Jobs are buffered on the session and enqueued after commit; a sweeper re-enqueues rows that stayed
pending (for example after Redis lost its data), and deterministic job ids make the re-enqueue a no-op
while the original job still exists.
"""

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypedDict, TypeVar

import structlog
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Retry
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# Enqueueing lives in `after_commit` (which `db` needs, so `db` and `jobs` no longer import each other);
# re-exported here because services enqueue their jobs from `kepler_kit.jobs`.
from kepler_kit.after_commit import AfterCommit as AfterCommit
from kepler_kit.after_commit import JobRequest as JobRequest
from kepler_kit.after_commit import after_commit as after_commit
from kepler_kit.after_commit import enqueue as enqueue
from kepler_kit.after_commit import enqueue_after_commit as enqueue_after_commit
from kepler_kit.after_commit import job_id as job_id
from kepler_kit.after_commit import wake_channel as wake_channel
from kepler_kit.context import request_id_var
from kepler_kit.db import transaction
from kepler_kit.faults import is_transient
from kepler_kit.logging import get_logger
from kepler_kit.metrics import JOB_DURATION, JOBS, JOBS_RESCUED, JOBS_RETRIED

log = get_logger(__name__)
MAX_TRIES = 5  # the workers' `max_tries`: a job failing on a dependency outage is retried this often
RETRY_BACKOFF_S = (1.0, 2.0, 4.0, 8.0)  # ~15 s of outage ridden out; past that the sweeper takes over


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


async def create_arq_pool(url: str, queue_name: str) -> ArqRedis:
    return await create_pool(redis_settings(url), default_queue_name=queue_name)


class WorkerContext(TypedDict, total=False):
    """What arq gives a job (redis, job_id, job_try) plus what our worker start-up adds."""

    redis: ArqRedis
    job_id: str
    job_try: int
    service: str
    queue_name: str
    sessionmaker: async_sessionmaker[AsyncSession]
    sweeps: Sequence["Sweep"]
    settings: Any  # the service's own settings class
    clients: dict[str, Any]  # the service's integration clients, built by its worker start-up
    consumers: "asyncio.Task[None]"  # the worker's consumers of the event log, when it has any


@asynccontextmanager
async def session_scope(ctx: WorkerContext) -> AsyncIterator[AsyncSession]:
    """The job's transaction: same rules as a request's (commit on success, jobs after commit)."""
    async with transaction(ctx["sessionmaker"], ctx["redis"], ctx.get("queue_name")) as session:
        yield session


P = ParamSpec("P")
R = TypeVar("R")
JobFunc = Callable[Concatenate[WorkerContext, P], Awaitable[R]]


def job(func: JobFunc[P, R]) -> Callable[..., Awaitable[R]]:
    """Binds the originating request id to the job's logs and records job metrics.

    A job that fails because Postgres or Redis is unreachable is retried with backoff (arq `Retry`)
    rather than left for the sweeper: jobs are idempotent, and the outage is usually seconds long."""

    @functools.wraps(func)
    async def run(ctx: WorkerContext, *args: Any, request_id: str | None = None, **kwargs: Any) -> R:
        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(job=func.__name__, job_id=ctx.get("job_id"))
        started, outcome = time.perf_counter(), "failed"
        try:
            result = await func(ctx, *args, **kwargs)
            outcome = "succeeded"
            return result
        except Exception as exc:
            delay = retry_delay(exc, ctx.get("job_try", 1))
            if delay is None:
                raise
            outcome = "retried"
            JOBS_RETRIED.labels(ctx.get("service", "unknown"), func.__name__).inc()
            log.warning("job_retry", error=type(exc).__name__, job_try=ctx.get("job_try", 1), defer_s=delay)
            raise Retry(defer=delay) from exc
        finally:
            service = ctx.get("service", "unknown")
            JOBS.labels(service, func.__name__, outcome).inc()
            JOB_DURATION.labels(service, func.__name__).observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("job", "job_id")
            request_id_var.reset(token)

    return run


def retry_delay(exc: BaseException, job_try: int) -> float | None:
    """Seconds until the next try of a job that raised `exc` on try `job_try`; None: let it fail."""
    if job_try >= MAX_TRIES or not is_transient(exc):
        return None
    return RETRY_BACKOFF_S[min(job_try, len(RETRY_BACKOFF_S)) - 1]


@dataclass(frozen=True)
class Sweep:
    """Rows in a pending state whose job may have been lost: `pending(cutoff)` selects the job's arguments.

    A column labelled `request_id` is not an argument: the re-created job logs it as the request that
    asked for the work."""

    function: str
    pending: Callable[[datetime], Select[Any] | Select[Any, Any] | Select[Any, Any, Any]]
    grace: timedelta = field(default=timedelta(seconds=10))


async def sweep(ctx: WorkerContext) -> int:
    """Re-enqueue work for rows left pending; returns how many jobs were actually re-created."""
    rescued = 0
    now = datetime.now(UTC)
    async with ctx["sessionmaker"]() as session:
        for rule in ctx.get("sweeps", ()):
            rows = (await session.execute(rule.pending(now - rule.grace))).all()
            for row in rows:
                values = dict(row._mapping)
                request_id = values.pop("request_id", None)
                args = tuple(
                    str(value) for value in values.values()
                )  # the other columns: the job's arguments
                request = JobRequest(rule.function, args, ctx.get("queue_name"), request_id)
                if await enqueue(ctx["redis"], request, ctx.get("queue_name")):
                    JOBS_RESCUED.labels(ctx.get("service", "unknown"), rule.function).inc()
                    log.warning("job_rescued", function=rule.function, args=args, request_id=request_id)
                    rescued += 1
    return rescued
