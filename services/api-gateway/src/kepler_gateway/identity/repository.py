"""Every query the gateway's identity endpoints run."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import ApiToken, AuditEvent, AuthSession, Membership, Namespace, RefreshToken, User


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.email) == email.lower()))


async def user_by_oidc(session: AsyncSession, issuer: str, subject: str) -> User | None:
    return await session.scalar(select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject))


async def memberships(session: AsyncSession, user_id: uuid.UUID) -> list[tuple[str, Any]]:
    query = (
        select(Namespace.name, Membership.role)
        .join(Membership, Membership.namespace_id == Namespace.id)
        .where(Membership.user_id == user_id)
        .order_by(Namespace.name)
    )
    return [(name, role) for name, role in (await session.execute(query)).all()]


async def refresh_token_for_update(session: AsyncSession, digest: str) -> RefreshToken | None:
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == digest).with_for_update()
    )


async def revoke_sessions(
    session: AsyncSession, user_id: uuid.UUID, reason: str, keep: uuid.UUID | None = None
) -> list[uuid.UUID]:
    query = (
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.id != keep)
        .values(revoked_at=func.now(), revoked_reason=reason)
        .returning(AuthSession.id)
    )
    return list(await session.scalars(query))


async def api_token_by_digest(session: AsyncSession, digest: str) -> tuple[ApiToken, str | None] | None:
    query = (
        select(ApiToken, Namespace.name)
        .outerjoin(Namespace, Namespace.id == ApiToken.namespace_id)
        .where(ApiToken.token_hash == digest)
    )
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row else None


async def api_tokens_of(
    session: AsyncSession, user_id: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> list[tuple[ApiToken, str | None]]:
    query = (
        select(ApiToken, Namespace.name)
        .outerjoin(Namespace, Namespace.id == ApiToken.namespace_id)
        .where(ApiToken.user_id == user_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(tuple_(ApiToken.created_at, ApiToken.id) < after)
    return [(token, ns) for token, ns in (await session.execute(query)).all()]


async def namespace_id(session: AsyncSession, name: str) -> uuid.UUID | None:
    return await session.scalar(select(Namespace.id).where(Namespace.name == name))


async def list_users(session: AsyncSession, limit: int, after: tuple[str] | None) -> list[User]:
    query = select(User).order_by(func.lower(User.email)).limit(limit + 1)
    if after is not None:
        query = query.where(func.lower(User.email) > after[0])
    return list(await session.scalars(query))


async def audit_events(
    session: AsyncSession, filters: dict[str, Any], limit: int, before_id: int | None
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    for column in ("namespace", "actor_id", "action", "outcome"):
        if filters.get(column) is not None:
            query = query.where(getattr(AuditEvent, column) == filters[column])
    if filters.get("since") is not None:
        query = query.where(AuditEvent.occurred_at >= filters["since"])
    if filters.get("until") is not None:
        query = query.where(AuditEvent.occurred_at < filters["until"])
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return list(await session.scalars(query))
