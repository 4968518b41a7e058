"""A user's inbox: their notifications, newest first, and what they have read. Each user reaches only
their own: every query is keyed by the caller, so another user's notification is simply not found.

Marking read is not audited: it is the user's reading position, not a change anyone else answers for."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.inbox import repository
from kepler_alert_service.inbox.schemas import EventOut, Notification, NotificationPage, ReadAll
from kepler_db import models
from kepler_db.base import utcnow
from kepler_kit.errors import NotFound, Unauthorized
from kepler_kit.identity import Principal
from kepler_kit.pagination import PageRequest, page_of


def me(who: Principal) -> uuid.UUID:
    """The caller's user id; the permission check let no anonymous caller this far."""
    if who.user_id is None:
        raise Unauthorized("Sign in, or send an access or API token.")
    return who.user_id


def event_out(event: models.PlatformEvent) -> EventOut:
    return EventOut(
        id=event.id,
        kind=event.kind,
        namespace=event.namespace,
        app=event.app,
        actor=event.actor,
        occurred_at=event.occurred_at,
        data=event.data,
    )


def _out(row: repository.NotificationRow) -> Notification:
    notification, event = row
    return Notification(
        id=notification.id,
        reason=notification.reason,
        created_at=notification.created_at,
        read=notification.read_at is not None,
        read_at=notification.read_at,
        event=event_out(event),
    )


async def list_notifications(
    session: AsyncSession, who: Principal, page: PageRequest, unread: bool
) -> NotificationPage:
    rows = await repository.list_notifications(session, me(who), page.limit, page.key(int), unread)
    return page_of(NotificationPage, rows, page.limit, lambda row: [row[0].id], _out)


async def unread_count(session: AsyncSession, who: Principal) -> int:
    return await repository.unread_count(session, me(who))


async def mark(session: AsyncSession, who: Principal, notification_id: int, *, read: bool) -> Notification:
    """Marking read twice keeps the first time it was read."""
    row = await repository.notification(session, me(who), notification_id)
    if row is None:
        raise NotFound(f"You have no notification {notification_id}.")
    notification = row[0]
    notification.read_at = (notification.read_at or utcnow()) if read else None
    await session.flush()
    return _out(row)


async def mark_all_read(session: AsyncSession, who: Principal, data: ReadAll | None) -> int:
    return await repository.mark_all_read(session, me(who), data.up_to if data else None)
