"""Every query of the inbox domain."""

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import App, InboxRule, Membership, Namespace, Notification, PlatformEvent, User
from kepler_db.base import utcnow

NotificationRow = tuple[Notification, PlatformEvent]
RuleRow = tuple[InboxRule, str | None, str | None]


def _still_visible(user_id: uuid.UUID) -> ColumnElement[bool]:
    """A notification of a namespace the user has since left is no longer theirs to read (as the feed)."""
    member = select(Membership.user_id).where(
        Membership.user_id == user_id, Membership.namespace_id == PlatformEvent.namespace_id
    )
    admin = select(User.id).where(User.id == user_id, User.is_admin)
    return or_(PlatformEvent.namespace_id.is_(None), member.exists(), admin.exists())


def _notifications(user_id: uuid.UUID) -> Select[Notification, PlatformEvent]:
    return (
        select(Notification, PlatformEvent)
        .join(PlatformEvent, PlatformEvent.id == Notification.event_id)
        .where(Notification.user_id == user_id, _still_visible(user_id))
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
    query = (
        select(func.count())
        .select_from(Notification)
        .join(PlatformEvent, PlatformEvent.id == Notification.event_id)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None), _still_visible(user_id))
    )
    return int(await session.scalar(query) or 0)


async def mark_all_read(session: AsyncSession, user_id: uuid.UUID, up_to: int | None) -> int:
    query = (
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .where(exists().where(PlatformEvent.id == Notification.event_id, _still_visible(user_id)))
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


# Every CTE is computed once (MATERIALIZED): a plan that loops over one must not recompute it. A follow is
# matched on (pattern, namespace) or, for a rule of every namespace, on the pattern alone: equality joins
# Postgres can hash against all the rules. A mute is looked up per recipient by its user (indexed).
_DELIVER = """
WITH batch AS MATERIALIZED (
    SELECT e.id, e.kind, split_part(e.kind, '.', 1) || '.*' AS family, e.namespace_id, e.app_id,
           e.actor_id, p.audience, p.tell_actor
    FROM unnest(CAST(:ids AS bigint[]), CAST(:audiences AS text[]), CAST(:tell_actor AS boolean[]))
         AS p(id, audience, tell_actor)
    JOIN platform_events e ON e.id = p.id
    WHERE NOT EXISTS (
        SELECT 1 FROM announcements a
        WHERE e.kind = 'announcement.published' AND a.withdrawn_at IS NOT NULL
          AND a.id::text = e.data ->> 'announcement_id'
    )
),
patterns AS MATERIALIZED (
    SELECT b.*, p.pattern
    FROM batch b CROSS JOIN LATERAL (VALUES (b.kind), (b.family)) AS p(pattern)
),
followed AS MATERIALIZED (
    SELECT b.id AS event_id, r.user_id
    FROM patterns b JOIN inbox_rules r ON r.pattern = b.pattern AND r.namespace_id = b.namespace_id
    WHERE NOT r.muted AND (r.app_id IS NULL OR r.app_id = b.app_id)
    UNION ALL
    SELECT b.id, r.user_id
    FROM patterns b JOIN inbox_rules r ON r.pattern = b.pattern
    WHERE r.namespace_id IS NULL AND NOT r.muted AND (r.app_id IS NULL OR r.app_id = b.app_id)
),
candidates AS MATERIALIZED (
    SELECT b.id AS event_id, m.user_id,
           CASE b.audience WHEN 'approvers' THEN 'approver' ELSE m.role::text END AS reason, 0 AS rank
    FROM batch b JOIN memberships m ON m.namespace_id = b.namespace_id
    WHERE b.audience = 'members'
       OR (b.audience IN ('maintainers', 'approvers') AND m.role IN ('owner', 'maintainer'))
    UNION ALL
    SELECT b.id, u.id, 'everyone', 0 FROM batch b JOIN users u ON b.audience = 'everyone'
    UNION ALL
    SELECT f.event_id, f.user_id, 'follow', 1
    FROM followed f JOIN batch b ON b.id = f.event_id
    WHERE EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = f.user_id AND m.namespace_id = b.namespace_id)
       OR EXISTS (SELECT 1 FROM users a WHERE a.id = f.user_id AND a.is_admin)
)
INSERT INTO notifications (user_id, event_id, reason)
SELECT DISTINCT ON (c.event_id, c.user_id) c.user_id, c.event_id, c.reason
FROM candidates c
JOIN batch b ON b.id = c.event_id
WHERE (b.tell_actor OR b.actor_id IS DISTINCT FROM c.user_id)
  AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = c.user_id AND u.disabled_at IS NOT NULL)
  AND NOT EXISTS (
      SELECT 1 FROM inbox_rules r
      WHERE r.user_id = c.user_id AND r.muted AND r.pattern IN (b.kind, b.family)
        AND (r.namespace_id IS NULL OR r.namespace_id = b.namespace_id)
        AND (r.app_id IS NULL OR r.app_id = b.app_id)
  )
ORDER BY c.event_id, c.user_id, c.rank
ON CONFLICT (user_id, event_id) DO NOTHING
"""


async def deliver(
    session: AsyncSession, ids: list[int], audiences: list[str | None], tell_actor: list[bool]
) -> None:
    """Notifies the recipients of events `ids` (with each one's default audience, and whether its actor
    is told), in one statement for the whole batch."""
    params = {"ids": ids, "audiences": audiences, "tell_actor": tell_actor}
    await session.execute(text(_DELIVER), params)
