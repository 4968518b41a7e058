"""Engine, sessions and the one transaction boundary per request or job."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from kepler_kit.after_commit import drop_pending_jobs, flush_pending_jobs
from kepler_kit.settings import KeplerSettings


def create_engine(
    url: str,
    *,
    pool_size: int = 5,
    connect_timeout: float = 5.0,
    command_timeout: float = 30.0,
    pool_timeout: float = 5.0,
) -> AsyncEngine:
    """Every wait on Postgres is bounded, so a hung server is a quick 503 (`faults.is_transient`), not a
    request held until the gateway gives up: connecting (`connect_timeout`), a statement
    (`command_timeout`, below the gateway's 60 s upstream timeout) and waiting for a pooled connection
    (`pool_timeout`)."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=False,
        pool_timeout=pool_timeout,
        connect_args={"timeout": connect_timeout, "command_timeout": command_timeout},
    )


def create_settings_engine(settings: KeplerSettings, *, pool_size: int = 5) -> AsyncEngine:
    """The engine for `settings.database_url` with the settings' bounded waits."""
    return create_engine(
        settings.database_url,
        pool_size=pool_size,
        connect_timeout=settings.db_connect_timeout_seconds,
        command_timeout=settings.db_command_timeout_seconds,
        pool_timeout=settings.db_pool_timeout_seconds,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession], arq: ArqRedis | None, queue_name: str | None = None
) -> AsyncIterator[AsyncSession]:
    """Commit on success, roll back on error; jobs buffered on the session leave only after commit."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            drop_pending_jobs(session)
            await session.rollback()
            raise
        if arq is not None:
            await flush_pending_jobs(session, arq, queue_name)


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    state = request.state
    async with transaction(state.sessionmaker, state.arq, state.settings.queue_name or None) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a 2xx means "durably stored".
DbSession = Annotated[AsyncSession, Depends(_request_session, scope="function")]
