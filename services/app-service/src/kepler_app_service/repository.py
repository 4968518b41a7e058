"""Every query app-service runs."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import App, Namespace, NamespaceStatus


async def namespace_by_name(session: AsyncSession, name: str) -> Namespace | None:
    return await session.scalar(select(Namespace).where(Namespace.name == name))


async def namespace_name_taken(session: AsyncSession, name: str) -> bool:
    return bool(await session.scalar(select(exists().where(Namespace.name == name))))


async def list_namespaces(session: AsyncSession, limit: int, after: list[Any] | None) -> list[Namespace]:
    query = select(Namespace).order_by(Namespace.name).limit(limit + 1)
    if after:
        query = query.where(Namespace.name > str(after[0]))
    return list(await session.scalars(query))


async def namespace_has_apps(session: AsyncSession, namespace_id: uuid.UUID) -> bool:
    return bool(await session.scalar(select(exists().where(App.namespace_id == namespace_id))))


async def app_by_name(session: AsyncSession, namespace_id: uuid.UUID, name: str) -> App | None:
    return await session.scalar(select(App).where(App.namespace_id == namespace_id, App.name == name))


async def list_apps(
    session: AsyncSession, namespace_id: uuid.UUID, limit: int, after: list[Any] | None
) -> list[App]:
    query = select(App).where(App.namespace_id == namespace_id).order_by(App.name).limit(limit + 1)
    if after:
        query = query.where(App.name > str(after[0]))
    return list(await session.scalars(query))


def provisioning_namespaces(cutoff: datetime) -> Select[uuid.UUID]:
    """Namespaces whose provisioning job may have been lost (the sweeper's query)."""
    return select(Namespace.id).where(
        Namespace.status == NamespaceStatus.provisioning, Namespace.updated_at < cutoff
    )
