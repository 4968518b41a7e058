"""Fixtures the kit's own tests share."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_kit.settings import KeplerSettings
from kepler_kit.testing.services import service_client

from .kit_app import create_kit_app


@pytest.fixture
async def client(
    settings_overrides: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession], arq: ArqRedis
) -> AsyncIterator[httpx.AsyncClient]:
    """The kit's sample service on the test database and Redis (modules override it for other settings)."""
    app = create_kit_app(KeplerSettings(**settings_overrides))
    async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
        yield client
