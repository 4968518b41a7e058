"""The tail reads the log in commit order without skipping: an event whose transaction commits after a
later-numbered one's is still delivered, first. Real commits, on connections of their own (the log's
horizon is about other transactions, which a test's single rolled-back one cannot show)."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from kepler_alert_service.feed.tail import Subscription, Tail
from kepler_db import PlatformEvent
from kepler_kit.db import create_sessionmaker
from kepler_kit.events import StoredEvent, publish, write_pending
from kepler_kit.events.kinds import AppRestarted
from kepler_kit.events.wakeups import Wakeups

SERVICE = "tail-test"  # marks this test's committed events, deleted afterwards


def restarted(app: str) -> AppRestarted:
    return AppRestarted(namespace="team-a", app=app)


@pytest.fixture
async def tail(engine: AsyncEngine, database_url: str) -> AsyncIterator[Tail]:
    async with Wakeups(database_url) as wakeups:
        tail = Tail(create_sessionmaker(engine), wakeups, poll_seconds=0.05, queue_size=100)
        task = asyncio.create_task(tail.run())
        await tail.started.wait()
        try:
            yield tail
        finally:
            task.cancel()
            async with engine.begin() as connection:
                await connection.execute(delete(PlatformEvent).where(PlatformEvent.service == SERVICE))


async def received(subscription: Subscription, count: int) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    async with asyncio.timeout(10):
        while len(events) < count:
            events += await subscription.take(1)
    return events


async def test_an_event_committed_late_is_not_skipped(engine: AsyncEngine, tail: Tail) -> None:
    subscription, _ = await tail.subscribe(lambda event: event.service == SERVICE)
    async with engine.connect() as slow_connection, engine.connect() as fast_connection:
        slow = AsyncSession(bind=slow_connection)
        publish(slow, restarted("slow"), service=SERVICE)
        await write_pending(slow)  # the lower id, in the older transaction: still running
        async with AsyncSession(bind=fast_connection) as fast:
            publish(fast, restarted("fast"), service=SERVICE)
            await fast.commit()

        await tail.read_ended()
        await tail.read_ended()  # one that began after the fast commit
        assert await subscription.take(0) == []  # the fast one waits behind the slow transaction
        await slow.commit()
        events = await received(subscription, 2)
        await slow.close()

    assert [event.app for event in events] == ["slow", "fast"]
    assert events[0].id < events[1].id
