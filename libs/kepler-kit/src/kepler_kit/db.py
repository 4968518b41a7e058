"""Engine, sessions and the one transaction boundary per request or job."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from kepler_kit.jobs import drop_pending_jobs, flush_pending_jobs


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=False)


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
