"""Inbox endpoints: the caller's own notifications and rules, thin and typed."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from kepler_alert_service.inbox import rules, service
from kepler_alert_service.inbox.schemas import (
    INT64_MAX,
    InboxRule,
    InboxRuleCreate,
    InboxRulePage,
    InboxRuleUpdate,
    Marked,
    Notification,
    NotificationPage,
    ReadAll,
    UnreadCount,
)
from kepler_kit.access import Access, require
from kepler_kit.db import DbSession
from kepler_kit.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, error_responses
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action

router = APIRouter(prefix="/api/v1/inbox", tags=["inbox"])
DENIED = (Unauthorized, Forbidden)


def _notification_id(
    notification_id: Annotated[int, Path(ge=1, le=INT64_MAX, description="A notification's id")],
) -> int:
    return notification_id


NotificationInPath = Annotated[int, Depends(_notification_id)]


@router.get("", responses=error_responses(*DENIED, BadRequest), summary="Your notifications, newest first")
async def list_notifications(
    session: DbSession,
    page: PageParams,
    unread: Annotated[bool, Query(description="Only those not read yet")] = False,
    access: Access = require(Action.inbox_view),
) -> NotificationPage:
    return await service.list_notifications(session, access.principal, page, unread)


@router.get(
    "/unread-count", responses=error_responses(*DENIED), summary="How many notifications you have not read"
)
async def count_unread_notifications(
    session: DbSession, access: Access = require(Action.inbox_view)
) -> UnreadCount:
    return UnreadCount(unread=await service.unread_count(session, access.principal))


@router.post("/{notification_id}/read", responses=error_responses(*DENIED, NotFound), summary="Mark one read")
async def mark_notification_read(
    notification_id: NotificationInPath, session: DbSession, access: Access = require(Action.inbox_manage)
) -> Notification:
    return await service.mark(session, access.principal, notification_id, read=True)


@router.post(
    "/{notification_id}/unread", responses=error_responses(*DENIED, NotFound), summary="Mark one unread"
)
async def mark_notification_unread(
    notification_id: NotificationInPath, session: DbSession, access: Access = require(Action.inbox_manage)
) -> Notification:
    return await service.mark(session, access.principal, notification_id, read=False)


@router.post("/read-all", responses=error_responses(*DENIED), summary="Mark all read (up to an id, if given)")
async def mark_all_notifications_read(
    session: DbSession, body: ReadAll | None = None, access: Access = require(Action.inbox_manage)
) -> Marked:
    return Marked(marked=await service.mark_all_read(session, access.principal, body))


# --- rules ---------------------------------------------------------------------------------------------


def _rule_id(rule_id: uuid.UUID) -> uuid.UUID:
    return rule_id


RuleInPath = Annotated[uuid.UUID, Depends(_rule_id)]


@router.get("/rules", responses=error_responses(*DENIED, BadRequest), summary="Your inbox rules")
async def list_inbox_rules(
    session: DbSession, page: PageParams, access: Access = require(Action.inbox_view)
) -> InboxRulePage:
    return await rules.list_rules(session, access.principal, page)


@router.post(
    "/rules",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, Conflict),
    summary="Follow or mute kinds of event, everywhere or in one namespace or app",
)
async def create_inbox_rule(
    body: InboxRuleCreate,
    session: DbSession,
    response: Response,
    access: Access = require(Action.inbox_manage),
) -> InboxRule:
    rule = await rules.create_rule(session, access.principal, body)
    response.headers["Location"] = f"{router.prefix}/rules/{rule.id}"
    return rule


@router.get(
    "/rules/{rule_id}", responses=error_responses(*DENIED, NotFound), summary="One of your inbox rules"
)
async def get_inbox_rule(
    rule_id: RuleInPath, session: DbSession, access: Access = require(Action.inbox_view)
) -> InboxRule:
    return await rules.get_rule(session, access.principal, rule_id)


@router.patch(
    "/rules/{rule_id}", responses=error_responses(*DENIED, NotFound), summary="Mute or unmute a rule"
)
async def update_inbox_rule(
    rule_id: RuleInPath,
    body: InboxRuleUpdate,
    session: DbSession,
    access: Access = require(Action.inbox_manage),
) -> InboxRule:
    return await rules.update_rule(session, access.principal, rule_id, body)


@router.delete(
    "/rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, NotFound),
    summary="Delete one of your inbox rules",
)
async def delete_inbox_rule(
    rule_id: RuleInPath, session: DbSession, access: Access = require(Action.inbox_manage)
) -> None:
    await rules.delete_rule(session, access.principal, rule_id)
