"""A user's inbox rules: follows (more than the defaults) and mutes (less, defaults included).

A rule names a namespace (and app) the user can see when it is made; delivery checks again, so a rule
outliving the user's membership reaches nothing. Rules are audited: they decide what a user is told."""

import uuid
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.audit import audit
from kepler_alert_service.inbox import repository
from kepler_alert_service.inbox.schemas import InboxRule, InboxRuleCreate, InboxRulePage, InboxRuleUpdate
from kepler_alert_service.inbox.service import me
from kepler_db import models
from kepler_kit.errors import Conflict, NotFound, ValidationFailed
from kepler_kit.identity import Principal
from kepler_kit.pagination import PageRequest, page_of

MAX_RULES = 200  # per user: every rule is matched against every event the consumer delivers


def _out(row: repository.RuleRow) -> InboxRule:
    rule, namespace, app = row
    return InboxRule(
        id=rule.id,
        pattern=rule.pattern,
        namespace=namespace,
        app=app,
        muted=rule.muted,
        created_at=rule.created_at,
    )


def _unknown(field: str, why: str) -> ValidationFailed:
    """The collection was found: a 404 would say it was not (RFC 9110: 404 is about the target)."""
    return ValidationFailed(
        f"body.{field}: {why}", errors=[{"loc": ["body", field], "msg": why, "type": "unknown"}]
    )


async def list_rules(session: AsyncSession, who: Principal, page: PageRequest) -> InboxRulePage:
    rows = await repository.list_rules(session, me(who), page.limit, page.key(datetime, uuid.UUID))
    return page_of(InboxRulePage, rows, page.limit, lambda row: [row[0].created_at, row[0].id], _out)


async def get_rule(session: AsyncSession, who: Principal, rule_id: uuid.UUID) -> InboxRule:
    return _out(await _existing(session, who, rule_id))


async def _existing(session: AsyncSession, who: Principal, rule_id: uuid.UUID) -> repository.RuleRow:
    row = await repository.rule(session, me(who), rule_id)
    if row is None:
        raise NotFound("You have no such inbox rule.")
    return row


async def _scope(
    session: AsyncSession, user_id: uuid.UUID, data: InboxRuleCreate
) -> tuple[models.Namespace | None, models.App | None]:
    if data.namespace is None:
        return None, None
    namespace = await repository.visible_namespace(session, user_id, data.namespace)
    if namespace is None:  # the same answer whether it does not exist or is not yours to see
        raise _unknown("namespace", "no namespace of this name that you can see")
    app = await repository.app_named(session, namespace.id, data.app) if data.app else None
    if data.app and app is None:
        raise _unknown("app", f"no app of this name in '{namespace.name}'")
    return namespace, app


async def create_rule(session: AsyncSession, who: Principal, data: InboxRuleCreate) -> InboxRule:
    user_id = me(who)
    if await repository.rule_count(session, user_id) >= MAX_RULES:
        raise Conflict(f"You have {MAX_RULES} inbox rules, the most there may be: delete some first.")
    namespace, app = await _scope(session, user_id, data)
    rule = models.InboxRule(
        user_id=user_id,
        pattern=data.pattern,
        namespace_id=namespace.id if namespace else None,
        app_id=app.id if app else None,
        muted=data.muted,
    )
    session.add(rule)
    try:  # a concurrent twin loses on the unique index: a 409, not a 500
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("You already have a rule for these events here; change or delete it.") from exc
    audit(session, who, "inbox_rule.create", "inbox_rule", str(rule.id), data.namespace, **_detail(rule))
    return _out((rule, data.namespace, data.app))


async def update_rule(
    session: AsyncSession, who: Principal, rule_id: uuid.UUID, data: InboxRuleUpdate
) -> InboxRule:
    row = await _existing(session, who, rule_id)
    row[0].muted = data.muted
    await session.flush()
    audit(session, who, "inbox_rule.update", "inbox_rule", str(rule_id), row[1], **_detail(row[0]))
    return _out(row)


async def delete_rule(session: AsyncSession, who: Principal, rule_id: uuid.UUID) -> None:
    rule, namespace, _ = await _existing(session, who, rule_id)
    await session.delete(rule)
    await session.flush()
    audit(session, who, "inbox_rule.delete", "inbox_rule", str(rule_id), namespace, **_detail(rule))


def _detail(rule: models.InboxRule) -> dict[str, object]:
    return {"pattern": rule.pattern, "muted": rule.muted, "app_id": str(rule.app_id) if rule.app_id else None}
