"""Cross-service contracts in one place: the services' names, the queue each one's worker consumes, the
names of their own jobs, and every job one service enqueues for another with its argument model.

A service never writes another's queue or job name as a string: both come from here, so a rename or a
changed argument is one edit that mypy follows into every sender and receiver.

What a service tells everyone (rather than asks of one) is a platform event: its typed model is in
`kepler_kit.events.kinds`, published with `kepler_kit.events.publish` and read by consumers of the log.

Adding a contract (build → deploy and alert → rollback are next):
1. Subclass `JobContract` below: `service` (the receiver), `job_name`, and the job's arguments as
   pydantic fields, in the order the job takes them (each travels as a string, as every job's does).
2. The sender calls `enqueue_contract(session, TheModel(...))`: buffered on its transaction, enqueued
   into the receiver's queue after commit under the deterministic id `<job_name>:<arg>:…`.
3. The receiver decorates its task with `@receives(TheModel)` (instead of `@job`) and lists it in its
   `WorkerSettings` functions: the task gets the validated model. A malformed payload is rejected: logged
   as `job_rejected`, the job fails once with a `RejectedJob` that says why, and it is not retried.
4. A test that enqueues through the sender's real code path and runs the receiver's worker.
"""

import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_kit.after_commit import JobRequest, enqueue_after_commit
from kepler_kit.jobs import WorkerContext, job
from kepler_kit.logging import get_logger

log = get_logger(__name__)

GATEWAY = "api-gateway"


class Service(StrEnum):
    """The services behind the gateway, by the name each runs (and is audited, logged and routed) under."""

    APP = "app-service"
    BUILD = "build-service"
    ALERT = "alert-service"
    TERMINAL = "terminal-service"


def service_queue(service: str) -> str:
    """The queue a service's worker consumes: other services enqueue there to hand it work."""
    return f"kepler:{service}"


# app-service's own jobs (enqueued and swept by app-service only).
PROVISION_NAMESPACE = "provision_namespace"
RUN_DEPLOYMENT = "run_deployment"


class RejectedJob(ValueError):
    """A job's arguments do not fit its contract: a bug in the sender, so retrying cannot help."""


class JobContract(BaseModel):
    """A job one service enqueues for another: the fields are the job's arguments, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    service: ClassVar[Service]
    job_name: ClassVar[str]

    @classmethod
    def queue(cls) -> str:
        return service_queue(cls.service)

    def job_args(self) -> tuple[str, ...]:
        return tuple(str(value) for value in self.model_dump(mode="json").values())

    def job_request(self, request_id: str | None = None) -> JobRequest:
        """For `kepler_kit.jobs.enqueue`, which enqueues at once (a worker or a test, not a request)."""
        return JobRequest(self.job_name, self.job_args(), self.queue(), request_id)

    @classmethod
    def from_job_args(cls, args: Sequence[Any]) -> Self:
        """The model for the arguments a job arrived with; `RejectedJob` says what does not fit."""
        names = list(cls.model_fields)
        if len(args) != len(names):
            raise RejectedJob(f"{cls.job_name} takes {len(names)} argument(s) {names}, got {len(args)}")
        try:
            return cls.model_validate(dict(zip(names, args, strict=True)))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise RejectedJob(f"{cls.job_name} got malformed arguments: {problems}") from None


class SyncIdpMemberships(JobContract):
    """gateway → app-service, after an OIDC login recorded the user's groups: they become namespace roles."""

    service = Service.APP
    job_name = "sync_idp_memberships"
    user_id: uuid.UUID


def enqueue_contract(session: AsyncSession, contract: JobContract) -> None:
    """Enqueue `contract`'s job into its receiver's queue once `session` commits (never on rollback)."""
    enqueue_after_commit(session, contract.job_name, *contract.job_args(), queue_name=contract.queue())


C = TypeVar("C", bound=JobContract)
R = TypeVar("R")
Handler = Callable[[WorkerContext, C], Awaitable[R]]


def receives(contract: type[C]) -> Callable[[Handler[C, R]], Callable[..., Awaitable[R]]]:
    """The task that runs `contract`'s job, registered under its job name, given the validated model."""

    def register(handle: Handler[C, R]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(handle)
        async def run(ctx: WorkerContext, *args: Any) -> R:
            try:
                arguments = contract.from_job_args(args)
            except RejectedJob as exc:
                log.error("job_rejected", job=contract.job_name, reason=str(exc))
                raise
            return await handle(ctx, arguments)

        run.__name__ = run.__qualname__ = contract.job_name  # the name arq registers and runs it under
        return job(run)

    return register
