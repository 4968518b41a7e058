"""Every query of the namespaces domain."""

import uuid
from datetime import datetime

from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import App, Cluster, Membership, Namespace, NamespaceStatus


async def namespace_by_name(session: AsyncSession, name: str) -> Namespace | None:
    return await session.scalar(select(Namespace).where(Namespace.name == name))


async def namespace_name_taken(session: AsyncSession, name: str) -> bool:
    return bool(await session.scalar(select(exists().where(Namespace.name == name))))


async def list_namespaces(
    session: AsyncSession, limit: int, after: tuple[str] | None, only: str | None = None
) -> list[Namespace]:
    query = select(Namespace).order_by(Namespace.name).limit(limit + 1)
    if only is not None:
        query = query.where(Namespace.name == only)
    if after is not None:
        query = query.where(Namespace.name > after[0])
    return list(await session.scalars(query))


async def namespace_has_apps(session: AsyncSession, namespace_id: uuid.UUID) -> bool:
    return bool(await session.scalar(select(exists().where(App.namespace_id == namespace_id))))


def provisioning_namespaces(cutoff: datetime) -> Select[uuid.UUID]:
    """Namespaces whose provisioning job may have been lost (the sweeper's query)."""
    return select(Namespace.id).where(
        Namespace.status == NamespaceStatus.provisioning, Namespace.updated_at < cutoff
    )


async def list_visible_namespaces(
    session: AsyncSession, user_id: uuid.UUID, limit: int, after: tuple[str] | None, only: str | None = None
) -> list[Namespace]:
    query = (
        select(Namespace)
        .join(Membership, (Membership.namespace_id == Namespace.id) & (Membership.user_id == user_id))
        .order_by(Namespace.name)
        .limit(limit + 1)
    )
    if only is not None:
        query = query.where(Namespace.name == only)
    if after is not None:
        query = query.where(Namespace.name > after[0])
    return list(await session.scalars(query))


async def cluster_id(session: AsyncSession, name: str) -> uuid.UUID | None:
    return await session.scalar(select(Cluster.id).where(Cluster.name == name))


async def placed_on(session: AsyncSession, namespace: Namespace, default: str | None) -> Cluster | None:
    """The namespace's own cluster, else the platform default's; None when it is bound to none at all."""
    if namespace.cluster_id is not None:
        return await session.get(Cluster, namespace.cluster_id)
    return await session.scalar(select(Cluster).where(Cluster.name == default)) if default else None
