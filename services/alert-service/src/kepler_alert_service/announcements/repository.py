"""Every query of the announcements domain."""

import uuid
from datetime import datetime

from sqlalchemy import Select, delete, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import Announcement, Membership, Namespace, Notification, PlatformEvent, Role, User
from kepler_db.base import utcnow

Row = tuple[
    Announcement, str | None, str | None
]  # the announcement, its namespace's name, its author's email


def _announcements() -> Select[Announcement, str | None, str | None]:
    return (
        select(Announcement, Namespace.name, User.email)
        .outerjoin(Namespace, Namespace.id == Announcement.namespace_id)
        .outerjoin(User, User.id == Announcement.created_by)
        .where(Announcement.withdrawn_at.is_(None))
    )


async def list_visible(
    session: AsyncSession,
    user_id: uuid.UUID | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
    include_expired: bool,
) -> list[Row]:
    """Newest first. `user_id` None: every namespace's (a platform admin's view)."""
    query = _announcements().order_by(Announcement.created_at.desc(), Announcement.id.desc()).limit(limit + 1)
    if user_id is not None:
        theirs = select(Membership.namespace_id).where(Membership.user_id == user_id)
        query = query.where(or_(Announcement.namespace_id.is_(None), Announcement.namespace_id.in_(theirs)))
    if not include_expired:
        query = query.where(or_(Announcement.expires_at.is_(None), Announcement.expires_at > utcnow()))
    if before is not None:
        query = query.where(tuple_(Announcement.created_at, Announcement.id) < tuple_(*before))
    return [(a, ns, author) for a, ns, author in (await session.execute(query)).all()]


async def announcement(
    session: AsyncSession, announcement_id: uuid.UUID, *, lock: bool = False
) -> Row | None:
    query = _announcements().where(Announcement.id == announcement_id)
    if lock:  # a withdrawal: two at once withdraw (and audit) once
        query = query.with_for_update(of=Announcement)
    row = (await session.execute(query)).first()
    return (row[0], row[1], row[2]) if row is not None else None


async def namespace_named(session: AsyncSession, name: str) -> Namespace | None:
    return await session.scalar(select(Namespace).where(Namespace.name == name))


async def role_of(session: AsyncSession, user_id: uuid.UUID, namespace_id: uuid.UUID) -> Role | None:
    query = select(Membership.role).where(
        Membership.user_id == user_id, Membership.namespace_id == namespace_id
    )
    return await session.scalar(query)


async def author_email(session: AsyncSession, user_id: uuid.UUID | None) -> str | None:
    return await session.scalar(select(User.email).where(User.id == user_id)) if user_id else None


async def drop_from_inboxes(session: AsyncSession, announcement_id: uuid.UUID) -> None:
    """The notifications of its publication (the consumer skips a withdrawn one it has yet to deliver)."""
    published = select(PlatformEvent.id).where(
        PlatformEvent.kind == "announcement.published",
        PlatformEvent.data["announcement_id"].astext == str(announcement_id),
    )
    await session.execute(
        delete(Notification)
        .where(Notification.event_id.in_(published))
        .execution_options(synchronize_session=False)
    )
