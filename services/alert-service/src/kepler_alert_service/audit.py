"""alert-service's audit rows: one signature for every domain, the service named once."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_kit.audit import record_audit
from kepler_kit.contracts import Service
from kepler_kit.identity import Principal


def audit(
    session: AsyncSession,
    who: Principal,
    action: str,
    kind: str,
    target: str,
    namespace: str | None = None,
    **detail: Any,
) -> None:
    """Written in the caller's transaction: the row exists exactly when the change does."""
    record_audit(
        session,
        who,
        service=Service.ALERT.value,
        action=action,
        target_type=kind,
        target=target,
        namespace=namespace,
        detail=detail,
    )
