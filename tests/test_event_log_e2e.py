"""The platform event log with committed transactions, as the services use it: nothing published by a
transaction that rolls back, nothing skipped when transactions commit out of order, and a consumer killed
mid-batch redelivers without doubling its effects."""

import asyncio
import os
import runpy
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kepler_devstack.embedded import start_redis_async
from kepler_kit.db import create_sessionmaker
from kepler_kit.events import (
    START,
    Batch,
    Consumer,
    Position,
    StoredEvent,
    drain,
    publish,
    read_after,
    write_pending,
)
from kepler_kit.events.consumers import follow
from kepler_kit.events.kinds import AppCreated
from kepler_kit.events.retention import prune
from kepler_kit.events.wakeups import Wakeups
from kepler_kit.metrics import REGISTRY
from kepler_kit.testing.database import TestDatabase

ROOT = Path(__file__).resolve().parent.parent
CONSUMER_SCRIPT = Path(__file__).resolve().parent / "event_consumer_process.py"


def _event(n: int) -> AppCreated:
    return AppCreated(namespace="team-a", app=f"app-{n}", app_id=uuid.uuid4())


@pytest.fixture
def log_sessions(scratch_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(scratch_engine)


async def _publish(sessions: async_sessionmaker[AsyncSession], count: int, start: int = 0) -> None:
    async with sessions() as session, session.begin():
        for n in range(start, start + count):
            publish(session, _event(n), service="test")


async def _publish_then_fail(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        publish(session, _event(1), service="test")
        await write_pending(session)
        raise RuntimeError("the request failed after publishing")


async def _apps(sessions: async_sessionmaker[AsyncSession]) -> list[str | None]:
    return [e.app for e in (await _caught_up(sessions, START)).events]


async def _caught_up(sessions: async_sessionmaker[AsyncSession], after: Position) -> Batch:
    """Reads as a consumer does, waiting while events are held back by a transaction still running (the
    horizon is the server's: another database's open transaction holds it too)."""
    async with asyncio.timeout(30):
        while True:
            async with sessions() as session:
                batch = await read_after(session, after, limit=10_000)
            if not batch.held_back:
                return batch
            await asyncio.sleep(0.05)


class TestPublish:
    async def test_a_rolled_back_transaction_publishes_nothing(
        self, log_sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        """The event is a row of the change's transaction: a request that fails leaves no event behind."""
        with pytest.raises(RuntimeError):
            await _publish_then_fail(log_sessions)
        await _publish(log_sessions, 1, start=2)
        assert await _apps(log_sessions) == ["app-2"]

    async def test_a_commit_wakes_a_listener_and_a_rollback_does_not(
        self, log_sessions: async_sessionmaker[AsyncSession], scratch: TestDatabase
    ) -> None:
        """Readers are woken by Postgres NOTIFY, which is sent on commit only (no Redis involved)."""
        async with Wakeups(scratch.url) as wakeups:
            await asyncio.wait_for(wakeups.connected.wait(), 10)
            seen = await wakeups.wait(-1, 0.5)
            with pytest.raises(RuntimeError):
                await _publish_then_fail(log_sessions)
            assert await wakeups.wait(seen, 0.3) == seen
            await _publish(log_sessions, 1)
            assert await wakeups.wait(seen, 10) > seen


class TestOrdering:
    async def test_an_event_committed_after_a_later_one_is_not_skipped(
        self, log_sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        """Ids come from a sequence at insert: `first` takes the lower id but commits last. A reader that
        trusted ids would pass `first`'s id on seeing `second` and never return to it; the reader waits at
        the horizon of running transactions instead, then takes both, in log order."""
        async with log_sessions() as first, log_sessions() as second:
            await first.begin()
            publish(first, _event(1), service="test")
            await write_pending(first)
            await second.begin()
            publish(second, _event(2), service="test")
            await second.commit()

            async with log_sessions() as reader:
                early = await read_after(reader, START)
            assert early.events == []
            assert early.held_back, "a committed event waits behind a running transaction"

            await first.commit()
        late = await _caught_up(log_sessions, early.end)
        assert [e.app for e in late.events] == ["app-1", "app-2"]
        assert not late.held_back
        first_id, second_id = (e.id for e in late.events)
        assert first_id < second_id, "the ids were taken in insert order, the commits were not"

    async def test_a_consumer_following_live_gets_out_of_order_commits_once_each(
        self, log_sessions: async_sessionmaker[AsyncSession], scratch: TestDatabase
    ) -> None:
        """A live consumer woken by each commit: the held-back event arrives as soon as its transaction
        commits, and nothing arrives twice."""
        got: list[str | None] = []

        async def handle(_: AsyncSession, events: Sequence[StoredEvent]) -> None:
            got.extend(e.app for e in events)

        consumer = Consumer("live", ["app.*"], handle)
        async with Wakeups(scratch.url) as wakeups:
            task = asyncio.create_task(follow(log_sessions, consumer, wakeups, poll_seconds=30))
            try:
                async with log_sessions() as slow:
                    await slow.begin()
                    publish(slow, _event(1), service="test")
                    await write_pending(slow)
                    await _publish(log_sessions, 1, start=2)
                    await asyncio.sleep(0.3)
                    assert got == []
                    await slow.commit()
                await _until(lambda: len(got) >= 2)
                await _publish(log_sessions, 1, start=3)
                await _until(lambda: len(got) >= 3)
            finally:
                task.cancel()
        assert got == ["app-1", "app-2", "app-3"]


async def _until(condition: Callable[[], bool], seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110  (a plain list filled by the handler: nothing to wait on)
            await asyncio.sleep(0.01)


@pytest.fixture
async def effects(log_sessions: async_sessionmaker[AsyncSession]) -> None:
    """What the test consumer does: count each event it handles, in the consumer's transaction."""
    async with log_sessions() as session, session.begin():
        await session.execute(
            text("CREATE TABLE effects (event_id bigint PRIMARY KEY, handled int NOT NULL)")
        )


class TestConsumerCrash:
    async def test_a_consumer_killed_mid_batch_redelivers_and_its_effect_happens_once(
        self, log_sessions: async_sessionmaker[AsyncSession], scratch: TestDatabase, effects: None
    ) -> None:
        """The worker process is SIGKILLed while its handler is half-way through a batch (effects written,
        cursor not yet moved). Nothing of that batch was committed: the next run gets it again, and every
        event's effect is there exactly once."""
        await _publish(log_sessions, 30)
        process = subprocess.Popen(  # noqa: ASYNC220  (starting it does not block; reading it is threaded)
            [sys.executable, str(CONSUMER_SCRIPT), scratch.url], cwd=ROOT, stdout=subprocess.PIPE
        )
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.strip() == b"mid-batch", line
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        process.stdout.close()

        async with log_sessions() as session:
            assert await session.scalar(text("SELECT count(*) FROM effects")) == 0
        consumer = runpy.run_path(str(CONSUMER_SCRIPT))["consumer"]  # the same one, now left to finish
        assert await drain(log_sessions, consumer()) == 30
        async with log_sessions() as session:
            counts = (await session.execute(text("SELECT handled, count(*) FROM effects GROUP BY 1"))).all()
            cursor = await session.scalar(text("SELECT consumed FROM event_consumers WHERE name = 'counter'"))
        assert counts == [(1, 30)]
        assert cursor == 30


class TestRedisOutage:
    async def test_a_redis_outage_delays_consumers_but_loses_nothing(
        self,
        log_sessions: async_sessionmaker[AsyncSession],
        scratch: TestDatabase,
        effects: None,
        tmp_path: Path,
    ) -> None:
        """Events live in Postgres and wake their readers through it: Redis is only the worker's job queue.
        Redis dies with the worker running; events published meanwhile are all handled, once each, by then
        or after Redis and the worker are back (a worker that stopped on losing Redis is restarted, as the
        supervisor does)."""
        redis = await start_redis_async(tmp_path / "redis", persist=False)
        env = {**os.environ, "KEPLER_DATABASE_URL": scratch.url, "KEPLER_REDIS_URL": redis.url}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(CONSUMER_SCRIPT.parent), env.get("PYTHONPATH")])
        )
        workers = [_start_worker(env, tmp_path / "worker.log")]
        try:
            await _publish(log_sessions, 10)
            await _handled(log_sessions, 10)
            redis.stop()
            await _publish(log_sessions, 10, start=10)
            await asyncio.sleep(1)
            redis = await start_redis_async(tmp_path / "redis", port=redis.port, persist=False)
            if workers[-1].poll() is not None:
                workers.append(_start_worker(env, tmp_path / "worker.log"))
            await _handled(log_sessions, 20)
        finally:
            for worker in workers:
                worker.kill()
                worker.wait(timeout=10)
            redis.stop()
        async with log_sessions() as session:
            counts = (await session.execute(text("SELECT handled, count(*) FROM effects GROUP BY 1"))).all()
        assert counts == [(1, 20)]


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "kepler_kit.worker", "event_consumer_process.WorkerSettings"]
    with log.open("ab") as sink:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=sink)


async def _handled(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    async with asyncio.timeout(60):
        while True:
            async with sessions() as session:
                if await session.scalar(text("SELECT count(*) FROM effects")) >= count:
                    return
            await asyncio.sleep(0.1)


class TestRetention:
    async def test_expired_events_are_deleted_and_a_consumer_behind_them_is_reported(
        self, log_sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        """Retention wins over a stuck consumer, and says which consumer loses how many events."""
        await _publish(log_sessions, 5)
        seen: list[int] = []

        async def handle(_: AsyncSession, events: Sequence[StoredEvent]) -> None:
            seen.extend(e.id for e in events)

        assert await drain(log_sessions, Consumer("caught-up", ["app.*"], handle)) == 5
        async with log_sessions() as session, session.begin():
            await session.execute(
                text("INSERT INTO event_consumers (name, txid, event_id, consumed) VALUES ('stuck', 0, 0, 0)")
            )
            await session.execute(
                text("UPDATE platform_events SET occurred_at = now() - interval '100 days'")
            )
        await _publish(log_sessions, 2, start=5)

        pruned = await prune(log_sessions, datetime.now(UTC) - timedelta(days=90))
        assert (pruned.deleted, pruned.behind) == (5, {"stuck": 5})
        assert await _apps(log_sessions) == ["app-5", "app-6"]
        labels = {"consumer": "stuck"}
        assert REGISTRY.get_sample_value("kepler_event_consumer_behind_retention", labels) == 1
