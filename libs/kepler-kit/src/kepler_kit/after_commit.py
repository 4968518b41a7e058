"""What leaves a transaction only once it has committed: jobs buffered on the session (enqueued into arq,
each under a deterministic id) and callbacks (an access-cache invalidation). Nothing leaves on rollback.

The request's and the job's transaction (`kepler_kit.db.transaction`) flush these after commit.
"""

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_kit.context import current_request_id
from kepler_kit.logging import get_logger
from kepler_kit.metrics import AFTER_COMMIT_FAILURES

log = get_logger(__name__)
_PENDING = "kepler_pending_jobs"


@dataclass(frozen=True)
class JobRequest:
    function: str
    args: tuple[str, ...]
    queue_name: str | None
    request_id: str | None = None

    @property
    def job_id(self) -> str:
        return job_id(self.function, *self.args)


def job_id(function: str, *args: str) -> str:
    """One id per unit of work, so arq refuses a duplicate while the first is queued or running."""
    return ":".join((function, *args))


def enqueue_after_commit(
    session: AsyncSession, function: str, *args: str, queue_name: str | None = None
) -> None:

    request = JobRequest(function, tuple(args), queue_name, current_request_id())
    session.info.setdefault(_PENDING, []).append(request)


_AFTER_COMMIT = "kepler_after_commit"
AfterCommit = Callable[[ArqRedis], Awaitable[None]]


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once the transaction has committed (to publish an invalidation); never on rollback."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def drop_pending_jobs(session: AsyncSession) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_AFTER_COMMIT, None)


async def flush_pending_jobs(session: AsyncSession, arq: ArqRedis, override_queue: str | None) -> None:
    """Never raises: the change is committed, so the caller must hear of its success. A job that did not
    make it into Redis is re-created by the sweeper from its row; each failure is logged and counted, and
    the rest still run (an access-cache invalidation must not be skipped because an enqueue failed)."""
    for request in session.info.pop(_PENDING, []):
        try:
            await enqueue(arq, request, override_queue)
        except Exception:
            _after_commit_failed("enqueue", request.function)

    for callback in session.info.pop(_AFTER_COMMIT, []):
        try:
            await callback(arq)
        except Exception:
            _after_commit_failed("callback", getattr(callback, "__qualname__", type(callback).__name__))


def _after_commit_failed(kind: str, name: str) -> None:
    AFTER_COMMIT_FAILURES.labels(kind, name).inc()
    log.warning("after_commit_failed", kind=kind, name=name, exc_info=True)


async def enqueue(arq: ArqRedis, request: JobRequest, override_queue: str | None) -> bool:
    """False when a job with the same id is already queued, running, or kept as a result.

    `override_queue` (KEPLER_QUEUE_NAME, set by tests) sends every job to one queue; otherwise a job goes
    to the queue it names (another service's) or to this process's own.
    """
    queue = override_queue or request.queue_name or arq.default_queue_name

    kwargs: dict[str, Any] = {"request_id": request.request_id} if request.request_id else {}
    job = await arq.enqueue_job(
        request.function, *request.args, _job_id=request.job_id, _queue_name=queue, **kwargs
    )
    if job is not None:
        with contextlib.suppress(RedisError, OSError):  # unwoken, the worker's next poll finds it
            await arq.publish(wake_channel(queue), b"")
    return job is not None


def wake_channel(queue: str) -> str:
    """Where `KeplerWorker`s of `queue` listen for news of a job to run now."""
    return f"{queue}:wake"
