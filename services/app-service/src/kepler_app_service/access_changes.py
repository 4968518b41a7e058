"""Telling every process's access cache that a namespace or a user's memberships changed."""

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_kit.access import publish_access_change
from kepler_kit.jobs import after_commit


def access_changed(session: AsyncSession, *messages: str) -> None:
    """Published after the commit: a cache refilled before it would keep the old answer."""

    async def publish(redis: ArqRedis) -> None:
        await publish_access_change(redis, *messages)

    after_commit(session, publish)
