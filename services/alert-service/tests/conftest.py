"""alert-service test fixtures: the world of `kepler_alert_service.testing`, the service in-process, and
the inbox consumer started (as a deployed worker starts it: at the end of the log)."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_alert_service.app import create_app
from kepler_alert_service.settings import AlertServiceSettings
from kepler_alert_service.testing import Identities, Inbox, World, build_world
from kepler_kit.testing.identities import Minter
from kepler_kit.testing.services import service_client


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
