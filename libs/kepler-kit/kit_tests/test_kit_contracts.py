"""Cross-service job contracts: a typed model enqueues exactly the job (queue, name, id) a bare string did,
only after commit, and the receiving task gets the model validated or rejects the payload without crashing."""

import uuid
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_kit.contracts import (
    JobContract,
    RejectedJob,
    Service,
    SyncIdpMemberships,
    enqueue_contract,
    receives,
)
from kepler_kit.db import transaction
from kepler_kit.jobs import JobRequest, WorkerContext, enqueue
from kepler_kit.logging import configure_logging
from kepler_kit.testing.services import run_burst_worker

USER = uuid.UUID("6f1c1a43-0d5e-4a59-9a3b-2c3f4e5d6a7b")  # not enqueued: job ids outlive a test in Redis


class Greet(JobContract):
    """A contract of this test only: two arguments of different types."""

    service = Service.APP
    job_name = "kit_test_greet"
    user_id: uuid.UUID
    times: int


RECEIVED: list[Greet] = []
MALFORMED = "kit_test_greet got malformed arguments"
ARITY = "kit_test_greet takes 2 argument(s) ['user_id', 'times']"


@receives(Greet)
async def greet(ctx: WorkerContext, job: Greet) -> int:
    RECEIVED.append(job)
    return job.times


class TestSending:
    def test_the_job_is_the_one_the_gateway_enqueued_by_string(self) -> None:
        """Same queue, job name, arguments and deterministic id as `"sync_idp_memberships", str(user.id)`
        into `service_queue("app-service")`: jobs already queued by an older gateway still match."""
        request = SyncIdpMemberships(user_id=USER).job_request()
        assert request == JobRequest("sync_idp_memberships", (str(USER),), "kepler:app-service")
        assert request.job_id == f"sync_idp_memberships:{USER}"

    async def test_enqueued_after_commit_and_never_on_rollback(
        self, sessionmaker: async_sessionmaker[AsyncSession], arq: ArqRedis, queue_name: str
    ) -> None:
        async def rolled_back() -> None:
            async with transaction(sessionmaker, arq, queue_name) as session:
                enqueue_contract(session, SyncIdpMemberships(user_id=uuid.uuid4()))
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await rolled_back()
        assert await arq.zrange(queue_name, 0, -1) == []

        user = uuid.uuid4()
        async with transaction(sessionmaker, arq, queue_name) as session:
            enqueue_contract(session, SyncIdpMemberships(user_id=user))
            assert await arq.zrange(queue_name, 0, -1) == []  # not before the commit
        assert await arq.zrange(queue_name, 0, -1) == [f"sync_idp_memberships:{user}".encode()]


class TestReceiving:
    async def test_the_task_gets_the_validated_model(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        redis_url: str,
        queue_name: str,
    ) -> None:
        RECEIVED.clear()
        user = uuid.uuid4()
        await enqueue(arq, Greet(user_id=user, times=3).job_request(), queue_name)
        done = await run_burst_worker(
            [greet], redis_url=redis_url, queue_name=queue_name, sessionmaker=sessionmaker
        )
        assert (done, RECEIVED) == (1, [Greet(user_id=user, times=3)])

    async def test_a_malformed_payload_is_rejected_once_and_the_worker_goes_on(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        redis_url: str,
        queue_name: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Not retried (a sender's bug does not heal), logged with what did not fit, and the next job runs."""
        configure_logging("kit-test-worker")  # as a worker process does, before it runs a job
        RECEIVED.clear()
        user, nonce = uuid.uuid4(), str(uuid.uuid4().int)
        assert await enqueue(arq, JobRequest("kit_test_greet", ("not-a-uuid", nonce), None), queue_name)
        assert await enqueue(arq, JobRequest("kit_test_greet", (nonce,), None), queue_name)
        assert await enqueue(arq, Greet(user_id=user, times=1).job_request(), queue_name)
        done = await run_burst_worker(
            [greet], redis_url=redis_url, queue_name=queue_name, sessionmaker=sessionmaker
        )
        assert (done, RECEIVED) == (1, [Greet(user_id=user, times=1)])
        logged = capsys.readouterr().err
        assert logged.count("job_rejected") == 2
        assert "kit_test_greet got malformed arguments: user_id" in logged
        assert "kit_test_greet takes 2 argument(s)" in logged

    @pytest.mark.parametrize(
        ("args", "reason"),
        [
            (
                ("not-a-uuid", "1"),
                "kit_test_greet got malformed arguments: user_id: Input should be a valid UUID",
            ),
            (
                (str(USER), "x"),
                "kit_test_greet got malformed arguments: times: Input should be a valid integer",
            ),
            ((str(USER),), "kit_test_greet takes 2 argument(s) ['user_id', 'times'], got 1"),
            ((str(USER), "1", "extra"), "kit_test_greet takes 2 argument(s) ['user_id', 'times'], got 3"),
        ],
    )
    def test_rejection_says_what_does_not_fit(self, args: tuple[Any, ...], reason: str) -> None:
        with pytest.raises(RejectedJob) as rejected:
            Greet.from_job_args(args)
        assert str(rejected.value).startswith(reason)

    def test_registered_under_the_contracts_job_name(self) -> None:
        assert greet.__qualname__ == "kit_test_greet"
