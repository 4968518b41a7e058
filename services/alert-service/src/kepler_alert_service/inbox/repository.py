"""Every query of the inbox domain."""

import uuid
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import App, InboxRule, Membership, Namespace, Notification, PlatformEvent, User
from kepler_db.base import utcnow

NotificationRow = tuple[Notification, PlatformEvent]
RuleRow = tuple[InboxRule, str | None, str | None]


def _notifications(user_id: uuid.UUID) -> Select[Notification, PlatformEvent]:
    return (
        select(Notification, PlatformEvent)
        .join(PlatformEvent, PlatformEvent.id == Notification.event_id)
        .where(Notification.user_id == user_id)
    )


async def list_notifications(
    session: AsyncSession, user_id: uuid.UUID, limit: int, before: tuple[int] | None, unread: bool
) -> list[NotificationRow]:
    """Newest first: by id, which the consumer hands out in the order it delivers."""
    query = _notifications(user_id).order_by(Notification.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Notification.id < before[0])
    if unread:
        query = query.where(Notification.read_at.is_(None))
    return [(n, e) for n, e in (await session.execute(query)).all()]


async def notification(
    session: AsyncSession, user_id: uuid.UUID, notification_id: int
) -> NotificationRow | None:
    """Another user's notification is not found: it is not yours to know of."""
    query = _notifications(user_id).where(Notification.id == notification_id).with_for_update(of=Notification)
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row is not None else None


async def unread_count(session: AsyncSession, user_id: uuid.UUID) -> int:
    query = select(func.count()).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    return int(await session.scalar(query) or 0)


async def mark_all_read(session: AsyncSession, user_id: uuid.UUID, up_to: int | None) -> int:
    query = (
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    if up_to is not None:
        query = query.where(Notification.id <= up_to)
    result = await session.execute(query.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _rules(user_id: uuid.UUID) -> Select[InboxRule, str | None, str | None]:
    return (
        select(InboxRule, Namespace.name, App.name)
        .outerjoin(Namespace, Namespace.id == InboxRule.namespace_id)
        .outerjoin(App, App.id == InboxRule.app_id)
        .where(InboxRule.user_id == user_id)
    )


async def list_rules(
    session: AsyncSession, user_id: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> list[RuleRow]:
    query = _rules(user_id).order_by(InboxRule.created_at, InboxRule.id).limit(limit + 1)
    if after is not None:
        query = query.where(tuple_(InboxRule.created_at, InboxRule.id) > tuple_(*after))
    return [(r, ns, app) for r, ns, app in (await session.execute(query)).all()]


async def rule_count(session: AsyncSession, user_id: uuid.UUID) -> int:
    return int(await session.scalar(select(func.count()).where(InboxRule.user_id == user_id)) or 0)


async def rule(session: AsyncSession, user_id: uuid.UUID, rule_id: uuid.UUID) -> RuleRow | None:
    row = (await session.execute(_rules(user_id).where(InboxRule.id == rule_id))).first()
    return (row[0], row[1], row[2]) if row is not None else None


async def visible_namespace(session: AsyncSession, user_id: uuid.UUID, name: str) -> Namespace | None:
    """The namespace, if this user may see it: a member, or a platform admin."""
    member = select(Membership.user_id).where(
        Membership.namespace_id == Namespace.id, Membership.user_id == user_id
    )
    admin = select(User.id).where(User.id == user_id, User.is_admin)
    query = select(Namespace).where(Namespace.name == name, or_(member.exists(), admin.exists()))
    return await session.scalar(query)


async def app_named(session: AsyncSession, namespace_id: uuid.UUID, name: str) -> App | None:
    return await session.scalar(select(App).where(and_(App.namespace_id == namespace_id, App.name == name)))
