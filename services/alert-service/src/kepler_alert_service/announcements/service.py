"""Announcements: platform admins speak to everyone, a namespace's owners to its members.

Publishing one writes the row, its `announcement.published` event (the inbox consumer and the activity
feed take it from the log) and its audit row in one transaction. Withdrawing one is allowed to whoever
may publish in its scope, and takes it out of the inboxes it reached."""

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.announcements import repository
from kepler_alert_service.announcements.schemas import Announcement, AnnouncementCreate, AnnouncementPage
from kepler_alert_service.audit import audit
from kepler_db import models
from kepler_db.base import utcnow
from kepler_kit.contracts import Service
from kepler_kit.errors import Forbidden, NotFound
from kepler_kit.events import publish
from kepler_kit.events.kinds import AnnouncementPublished
from kepler_kit.identity import Principal
from kepler_kit.pagination import PageRequest, page_of
from kepler_kit.permissions import Action, Caller, Decision, decide

GONE = "No such announcement (or it was withdrawn)."


def _out(row: repository.Row) -> Announcement:
    announcement, namespace, author = row
    return Announcement(
        id=announcement.id,
        namespace=namespace,
        title=announcement.title,
        body=announcement.body,
        severity=announcement.severity,
        expires_at=announcement.expires_at,
        created_at=announcement.created_at,
        author=author,
    )


async def list_announcements(
    session: AsyncSession, who: Principal, page: PageRequest, include_expired: bool
) -> AnnouncementPage:
    """Platform-wide ones and those of the caller's namespaces (an admin may see every namespace)."""
    user_id = None if who.is_admin else who.user_id
    before = page.key(datetime, uuid.UUID)
    rows = await repository.list_visible(session, user_id, page.limit, before, include_expired)
    return page_of(AnnouncementPage, rows, page.limit, lambda r: [r[0].created_at, r[0].id], _out)


async def get_announcement(session: AsyncSession, who: Principal, announcement_id: uuid.UUID) -> Announcement:
    """One of a namespace the caller cannot see is not found, as one that never was."""
    row = await repository.announcement(session, announcement_id)
    if row is None or not await _may_see(session, who, row[0]):
        raise NotFound(GONE)
    return _out(row)


async def _may_see(session: AsyncSession, who: Principal, announcement: models.Announcement) -> bool:
    if announcement.namespace_id is None or who.is_admin:
        return True
    return (
        who.user_id is not None
        and await repository.role_of(session, who.user_id, announcement.namespace_id) is not None
    )


async def _namespace(session: AsyncSession, name: str | None) -> models.Namespace | None:
    """Only an admin gets here with a namespace that does not exist: others were answered by the check."""
    if name is None:
        return None
    namespace = await repository.namespace_named(session, name)
    if namespace is None:
        raise NotFound(f"Namespace '{name}' does not exist.")
    return namespace


def _published(announcement: models.Announcement, namespace: str | None) -> AnnouncementPublished:
    return AnnouncementPublished(
        namespace_id=announcement.namespace_id,
        namespace=namespace,
        announcement_id=announcement.id,
        title=announcement.title,
        severity=announcement.severity.value,
        expires_at=announcement.expires_at,
    )


async def publish_announcement(
    session: AsyncSession, who: Principal, namespace_name: str | None, data: AnnouncementCreate
) -> Announcement:
    namespace = await _namespace(session, namespace_name)
    announcement = models.Announcement(
        namespace_id=namespace.id if namespace else None,
        created_by=who.user_id,
        **data.model_dump(),
    )
    session.add(announcement)
    await session.flush()
    publish(session, _published(announcement, namespace_name), service=Service.ALERT.value, actor=who)
    target = str(announcement.id)
    detail = {"title": data.title, "severity": data.severity.value}
    audit(session, who, "announcement.publish", "announcement", target, namespace_name, **detail)
    return _out((announcement, namespace_name, await repository.author_email(session, who.user_id)))


async def withdraw_announcement(session: AsyncSession, who: Principal, announcement_id: uuid.UUID) -> None:
    row = await repository.announcement(session, announcement_id, lock=True)
    if row is None:
        raise NotFound(GONE)
    announcement, namespace, _ = row
    await _may_manage(session, who, announcement, namespace)
    announcement.withdrawn_at = utcnow()
    await session.flush()
    await repository.drop_from_inboxes(session, announcement.id)
    audit(session, who, "announcement.withdraw", "announcement", str(announcement.id), namespace)


async def _may_manage(
    session: AsyncSession, who: Principal, announcement: models.Announcement, namespace: str | None
) -> None:
    """The permission table's answer for publishing in the announcement's own scope: admins for a
    platform-wide one, owners for a namespace's; one of a namespace the caller cannot see is not found."""
    role = None
    if announcement.namespace_id is not None and who.user_id is not None:
        role = await repository.role_of(session, who.user_id, announcement.namespace_id)
    caller = Caller(True, who.is_admin, who.scope, who.token_namespace, role)
    decision = decide(Action.announcement_manage, caller, namespace)
    if decision is Decision.hidden:
        raise NotFound(GONE)
    if decision is not Decision.allow:
        whose = f"'{namespace}''s owners" if namespace else "platform admins"
        raise Forbidden(f"Only {whose} may withdraw this announcement.")
