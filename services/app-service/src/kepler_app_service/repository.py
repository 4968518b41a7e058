"""Every query app-service runs."""

import uuid
from datetime import datetime

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import App, Cluster, Membership, Namespace, NamespaceStatus, Role, User


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


async def app_by_name(session: AsyncSession, namespace_id: uuid.UUID, name: str) -> App | None:
    return await session.scalar(select(App).where(App.namespace_id == namespace_id, App.name == name))


async def list_apps(
    session: AsyncSession, namespace_id: uuid.UUID, limit: int, after: tuple[str] | None
) -> list[App]:
    query = select(App).where(App.namespace_id == namespace_id).order_by(App.name).limit(limit + 1)
    if after is not None:
        query = query.where(App.name > after[0])
    return list(await session.scalars(query))


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


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.email) == email.lower()))


async def membership(session: AsyncSession, namespace_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
    return await session.get(Membership, (user_id, namespace_id), with_for_update=True)


async def owner_count(session: AsyncSession, namespace_id: uuid.UUID) -> int:
    """Locks the owners' rows, so two concurrent demotions cannot both leave the namespace ownerless."""
    query = (
        select(Membership.user_id)
        .where(Membership.namespace_id == namespace_id, Membership.role == Role.owner)
        .with_for_update()
    )
    return len(list(await session.scalars(query)))


async def list_members(
    session: AsyncSession, namespace_id: uuid.UUID, limit: int, after: tuple[str] | None
) -> list[tuple[Membership, User]]:
    query = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.namespace_id == namespace_id)
        .order_by(func.lower(User.email))
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(func.lower(User.email) > after[0])
    return [(m, u) for m, u in (await session.execute(query)).all()]


async def namespaces_named(session: AsyncSession, names: list[str]) -> list[Namespace]:
    return list(await session.scalars(select(Namespace).where(Namespace.name.in_(names))))


async def memberships_of_user(session: AsyncSession, user_id: uuid.UUID) -> list[Membership]:
    return list(
        await session.scalars(select(Membership).where(Membership.user_id == user_id).with_for_update())
    )


async def cluster_id(session: AsyncSession, name: str) -> uuid.UUID | None:
    return await session.scalar(select(Cluster.id).where(Cluster.name == name))
