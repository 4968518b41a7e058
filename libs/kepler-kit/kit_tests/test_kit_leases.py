"""Leases on the real test Postgres: one holder at a time, takeover when the holder's connection dies, and
the fence that keeps a holder which lost its lease from writing after the new holder starts."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from kepler_kit.db import create_sessionmaker
from kepler_kit.leases import Lease, Leases, holder

BOUND = 10.0  # a wait bound only: a test that needs it has failed


class Contender(Protocol):
    def __call__(self, identity: str, check_seconds: float = 0.02) -> Leases: ...


@pytest.fixture
def name() -> str:
    return f"test-lease:{secrets.token_hex(4)}"


@pytest.fixture
async def contenders(engine: AsyncEngine) -> AsyncIterator[Contender]:
    """Contenders as separate processes would be: each `Leases` has a connection of its own."""
    made: list[Leases] = []

    def contender(identity: str, check_seconds: float = 0.02) -> Leases:
        made.append(Leases(engine, identity=identity, retry_seconds=0.02, check_seconds=check_seconds))
        return made[-1]

    yield contender
    for leases in made:
        await leases.close()


async def held_by(engine: AsyncEngine, name: str) -> str | None:
    async with create_sessionmaker(engine)() as session:
        return await holder(session, name)


async def until_held_by(engine: AsyncEngine, name: str, identity: str) -> None:
    while True:
        if await held_by(engine, name) == identity:
            return
        await asyncio.sleep(0.01)


async def terminate(engine: AsyncEngine, lease: Lease) -> None:
    """What a `kill -9` of the holder does to its connection, seen from the server."""
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": lease.token[0]})


async def test_two_contenders_only_one_holds(engine: AsyncEngine, contenders: Contender, name: str) -> None:
    """The second contender, and a second try by the holder's own process, do not get a held lease."""
    a, b = contenders("a"), contenders("b")
    assert await a.try_acquire(name) is not None
    assert await b.try_acquire(name) is None
    assert await a.try_acquire(name) is None  # advisory locks are re-entrant: the process must not win twice
    assert await held_by(engine, name) == "a"


async def test_a_released_lease_goes_to_the_other_contender(
    engine: AsyncEngine, contenders: Contender, name: str
) -> None:
    a, b = contenders("a"), contenders("b")
    lease = await a.try_acquire(name)
    assert lease is not None
    await a.release(lease)
    assert not lease.held
    assert await b.try_acquire(name) is not None
    assert await held_by(engine, name) == "b"


async def test_a_killed_holder_connection_stops_its_loop_and_the_other_takes_over(
    engine: AsyncEngine, contenders: Contender, name: str
) -> None:
    """The holder's loop is cancelled when its connection dies, and the waiting contender's loop starts."""
    a, b = contenders("a"), contenders("b")
    running: dict[str, Lease] = {}
    started, stopped = {"a": asyncio.Event(), "b": asyncio.Event()}, asyncio.Event()

    def loop(who: str) -> Callable[[Lease], Awaitable[None]]:
        async def work(lease: Lease) -> None:
            running[who] = lease
            started[who].set()
            try:
                await asyncio.Event().wait()
            finally:
                if who == "a":
                    stopped.set()

        return work

    first = asyncio.create_task(a.run_while_held(name, loop("a")))
    await asyncio.wait_for(started["a"].wait(), BOUND)
    second = asyncio.create_task(b.run_while_held(name, loop("b")))
    try:
        assert await held_by(engine, name) == "a"
        assert not started["b"].is_set()
        await terminate(engine, running["a"])
        await asyncio.wait_for(stopped.wait(), BOUND)
        await asyncio.wait_for(started["b"].wait(), BOUND)
        assert not running["a"].held
        assert await held_by(engine, name) == "b"
    finally:
        for task in (first, second):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_holder_that_lost_its_lease_cannot_write_after_the_new_holder_starts(
    engine: AsyncEngine, contenders: Contender, name: str
) -> None:
    """A write already past its fence when the holder dies holds the new holder back until it commits;
    the old holder's next write fails its fence, the new holder's passes: checked by the server, the old
    holder (stalled: it has not noticed its loss yet) still believes it holds the lease."""
    a, b = contenders("a", check_seconds=3600), contenders("b")
    old = await a.try_acquire(name)
    assert old is not None
    sessions = create_sessionmaker(engine)
    async with sessions() as in_flight, in_flight.begin():
        assert await old.fence(in_flight)
        await terminate(engine, old)
        taking_over = asyncio.create_task(b.acquire(name))
        await asyncio.wait_for(until_held_by(engine, name, "b"), BOUND)  # then it waits at the fence
        assert not taking_over.done()
    new = await asyncio.wait_for(taking_over, BOUND)
    assert old.held
    assert await fences(sessions(), old) is False
    assert await fences(sessions(), new) is True


async def fences(session: AsyncSession, lease: Lease) -> bool:
    async with session, session.begin():
        return await lease.fence(session)


async def test_closing_releases_every_lease(engine: AsyncEngine, contenders: Contender, name: str) -> None:
    """A worker shutting down hands its leases over at once, not when its connection times out."""
    a, b = contenders("a"), contenders("b")
    lease = await a.try_acquire(name)
    assert lease is not None
    await a.close()
    assert not lease.held
    assert await b.try_acquire(name) is not None


async def test_a_cancelled_loop_releases_its_lease(
    engine: AsyncEngine, contenders: Contender, name: str
) -> None:
    a = contenders("a")
    started = asyncio.Event()

    async def work(lease: Lease) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(a.run_while_held(name, work))
    await asyncio.wait_for(started.wait(), BOUND)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await held_by(engine, name) is None
