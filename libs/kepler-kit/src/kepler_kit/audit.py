"""Audit events are written in the same transaction as the change they record."""

import ipaddress
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import AuditEvent, AuditOutcome
from kepler_kit.context import current_request_id
from kepler_kit.identity import Principal


def _valid_ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def record_audit(
    session: AsyncSession,
    principal: Principal,
    *,
    service: str,
    action: str,
    target_type: str,
    target: str,
    namespace: str | None = None,
    outcome: AuditOutcome = AuditOutcome.success,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            service=service,
            actor_id=principal.user_id,
            actor=principal.name,
            token_id=principal.token_id,
            action=action,
            target_type=target_type,
            target=target,
            namespace=namespace,
            request_id=current_request_id(),
            outcome=outcome,
            client_ip=_valid_ip(principal.client_ip),
            detail=detail or {},
        )
    )


async def record_audit_now(
    sessionmaker: async_sessionmaker[AsyncSession], principal: Principal, **event: Any
) -> None:
    """For outcomes whose request transaction rolls back (denials, failed logins): its own transaction."""
    async with sessionmaker() as session:
        record_audit(session, principal, **event)
        await session.commit()
