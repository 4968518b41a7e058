"""Access caches under load: one load per expired entry however many requests wait for it, and nothing
learnt before a published change is kept after it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import Namespace, Role
from kepler_kit.access import AccessControl, SingleFlight
from kepler_kit.testing.identities import make_member, make_user


class CountingSessions:
    """The test's sessionmaker, counting the sessions asked for and holding each until `gate` opens."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker, self.opened = sessionmaker, 0
        self.gate = asyncio.Event()
        self.gate.set()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        self.opened += 1
        await self.gate.wait()
        async with self.sessionmaker() as session:
            yield session


@pytest.fixture
async def member(session: AsyncSession) -> Any:
    session.add(Namespace(name="team-a"))
    await session.flush()
    user = await make_user(session, "dev@example.com")
    await make_member(session, user, "team-a", Role.developer)
    await session.commit()
    return user


class TestSingleFlight:
    async def test_concurrent_callers_share_one_load(self) -> None:
        flight, loads, release = SingleFlight(), [], asyncio.Event()

        async def load() -> int:
            loads.append(1)
            await release.wait()
            return 42

        waiters = [asyncio.create_task(flight.run("k", load)) for _ in range(50)]
        await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*waiters) == [42] * 50
        assert len(loads) == 1
        assert await flight.run("k", load) == 42
        assert len(loads) == 2  # the first load was done: the next caller loads again

    async def test_a_waiter_leaving_does_not_cancel_the_load(self) -> None:
        flight, release = SingleFlight(), asyncio.Event()

        async def load() -> str:
            await release.wait()
            return "done"

        first = asyncio.create_task(flight.run("k", load))
        second = asyncio.create_task(flight.run("k", load))
        await asyncio.sleep(0)
        first.cancel()
        release.set()
        assert await second == "done"
        assert first.cancelled()

    async def test_every_waiter_gets_the_failure(self) -> None:
        flight = SingleFlight()

        async def load() -> None:
            await asyncio.sleep(0)
            raise LookupError("gone")

        results = await asyncio.gather(*(flight.run("k", load) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(result, LookupError) for result in results)

    async def test_callers_after_forget_start_afresh(self) -> None:
        flight, release, loads = SingleFlight(), asyncio.Event(), []

        async def load() -> int:
            loads.append(1)
            await release.wait()
            return len(loads)

        old = asyncio.create_task(flight.run("k", load))
        await asyncio.sleep(0)
        flight.forget()  # e.g. an access change was published: a running load may predate it
        new = asyncio.create_task(flight.run("k", load))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(old, new)
        assert len(loads) == 2


@pytest.fixture
def sessions(sessionmaker: async_sessionmaker[AsyncSession]) -> CountingSessions:
    """Closed: loads wait for the test to open the gate."""
    sessions = CountingSessions(sessionmaker)
    sessions.gate.clear()
    return sessions


class TestAccessControl:
    async def test_an_expired_entry_is_loaded_once_for_all_waiters(
        self, sessions: CountingSessions, member: Any
    ) -> None:
        access = AccessControl(sessions, ttl=60)  # type: ignore[arg-type]
        checks = [asyncio.create_task(access.namespace_access(member.id, "team-a")) for _ in range(64)]
        await asyncio.sleep(0.01)
        sessions.gate.set()
        results = await asyncio.gather(*checks)
        assert {result.role for result in results} == {Role.developer}
        assert sessions.opened == 1  # and the test's single connection never saw two queries at once

    async def test_an_answer_that_may_predate_a_change_is_not_kept(
        self, sessions: CountingSessions, member: Any
    ) -> None:
        access = AccessControl(sessions, ttl=60)  # type: ignore[arg-type]
        before = asyncio.create_task(access.user(member.id))
        await asyncio.sleep(0.01)
        access.invalidate(f"user:{member.id}")  # published while the load was in flight
        sessions.gate.set()
        await before
        await access.user(member.id)
        assert sessions.opened == 2  # the answer from before the change was not kept
        await access.user(member.id)
        assert sessions.opened == 2  # the one from after it was
