"""alert-service test fixtures: the world of `kepler_alert_service.testing`, the service in-process, the
inbox consumer started (as a deployed worker starts it: at the end of the log), and the service served with
its feed's tail reading the test's transaction."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from kepler_alert_service.app import create_app
from kepler_alert_service.feed.tail import tail_lifespan
from kepler_alert_service.feed.testing import Feed, serve
from kepler_alert_service.feed.testing import World as FeedWorld
from kepler_alert_service.feed.testing import build_world as build_feed_world
from kepler_alert_service.settings import AlertServiceSettings
from kepler_alert_service.testing import Identities, Inbox, World, build_world
from kepler_kit.testing.identities import Minter
from kepler_kit.testing.services import WithState, service_client


@pytest.fixture
async def world(session: AsyncSession) -> World:
    return await build_world(session)


@pytest.fixture
async def client(
    settings_overrides: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession], arq: ArqRedis
) -> AsyncIterator[httpx.AsyncClient]:
    """alert-service with no identity of its own: each request says who calls (`Identities`)."""
    app = create_app(AlertServiceSettings(**settings_overrides))
    async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
        yield client


@pytest.fixture
def as_(minter: Minter, world: World) -> Identities:
    return Identities(minter, world)


@pytest.fixture
async def inbox(session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], world: World) -> Inbox:
    """Started before the test publishes anything: a new consumer begins at the end of the log."""
    inbox = Inbox(session, sessionmaker, world)
    assert await inbox.deliver() == 0
    return inbox


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    """The tail polls often (a test's events are never committed, so no NOTIFY wakes it) and an idle
    stream says so at once (a keep-alive tells a test the stream has sent all it had)."""
    return {**settings_overrides, "feed_poll_seconds": 0.02, "feed_keepalive_seconds": 0.2}


@pytest.fixture
async def feed(
    settings_overrides: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
    arq: ArqRedis,
    session: AsyncSession,
) -> AsyncIterator[Feed]:
    """The service over the test's transaction, served on a loopback port.

    Its tail reads that transaction too, but without savepoints of its own: the tail's reads run at any
    moment, and a savepoint opened by one and released under another session's (a request's) would end
    that one's. Requests keep the test's sessionmaker, as in every service's tests."""
    settings = AlertServiceSettings(**settings_overrides)
    app = create_app(settings)
    found: dict[str, Any] = {}
    reads = async_sessionmaker(
        bind=db_connection, expire_on_commit=False, join_transaction_mode="rollback_only"
    )

    @asynccontextmanager
    async def tail_over_the_test(state: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async with tail_lifespan(settings)({**state, "sessionmaker": reads}) as more:
            found.update(state, **more)
            yield more

    async with service_client(app, sessionmaker=sessionmaker, arq=arq, extra=tail_over_the_test):
        await found["feed_tail"].started.wait()
        async with serve(WithState(app, found)) as url:
            yield Feed(url, found["feed_tail"], session)


@pytest.fixture
async def feed_world(session: AsyncSession, minter: Minter) -> FeedWorld:
    return await build_feed_world(session, minter)
