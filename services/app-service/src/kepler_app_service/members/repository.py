"""Every query of the members domain."""

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import Membership, Namespace, Role, User


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
