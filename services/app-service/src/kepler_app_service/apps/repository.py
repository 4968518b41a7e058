"""Every query of the apps domain."""

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import App


async def app_by_name(session: AsyncSession, namespace_id: uuid.UUID, name: str) -> App | None:
    return await session.scalar(select(App).where(App.namespace_id == namespace_id, App.name == name))


async def list_apps(
    session: AsyncSession, namespace_id: uuid.UUID, limit: int, after: tuple[str] | None
) -> list[App]:
    query = select(App).where(App.namespace_id == namespace_id).order_by(App.name).limit(limit + 1)
    if after is not None:
        query = query.where(App.name > after[0])
    return list(await session.scalars(query))
