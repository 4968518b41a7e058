"""The one writer of `deployment.status`. Flushes, never commits.

Each move is checked against the table in `states` and written together with what goes with it: the
status event a follower sees (and a reconnecting one catches up on) and, when a person or an automatic
decision asked for it, the audit row. A move the table does not allow raises `IllegalTransition` (a 409
when it reaches the API) before anything is written.
"""

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.audit import audit
from kepler_app_service.releases import events, platform
from kepler_app_service.releases.states import AWAITING_APPROVAL, DEPLOYMENTS, WHILE_AWAITING_APPROVAL
from kepler_db import Deployment, DeploymentStatus, Release
from kepler_kit.identity import Principal
from kepler_kit.lifecycle import IllegalTransition


class Keep(enum.Enum):
    """A field the move leaves as it is (a claim keeps the reason the last attempt gave, for one)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, kw_only=True)
class Audit:
    """Who asked for a move, and how the audit log names it. Bookkeeping moves of the runner (claim,
    follow, wait for the cluster) and superseding have none, as before the lifecycle was written down."""

    who: Principal
    action: str
    app: str
    namespace: str
    detail: dict[str, Any] = field(default_factory=dict)


async def begin(
    session: AsyncSession, deployment: Deployment, release: Release, who: Principal | None
) -> None:
    """A new deployment enters in the initial state; its first status event names its release, and the
    platform log hears it was requested (and that it waits for approval, when it does)."""
    deployment.status = DEPLOYMENTS.initial
    session.add(deployment)
    await session.flush()
    events.record(
        session, deployment, "status", {**events.status_event(deployment), "release": release.number}
    )
    await platform.requested(session, deployment, release, who)


async def move(
    session: AsyncSession,
    deployment: Deployment,
    to: DeploymentStatus,
    reason: str | None | Keep = KEEP,
    message: str | None | Keep = KEEP,
    *,
    audit: Audit | None = None,
    to_release: int | None = None,
) -> None:
    """`to_release`: for a deployment rolled back, the release the rollback runs (the platform log says)."""
    _check_hold(deployment, to)
    approved = deployment.reason == AWAITING_APPROVAL and to is DeploymentStatus.pending
    DEPLOYMENTS.move(deployment, to)
    if not isinstance(reason, Keep):
        deployment.reason = reason
    if not isinstance(message, Keep):
        deployment.message = message[:2000] if message else message
    _stamp(deployment, to)
    events.record(session, deployment, "status", events.status_event(deployment))
    if audit is not None:
        _record(session, audit)
    await platform.moved(session, deployment, approved, audit.who if audit else None, to_release)
    await session.flush()


def _check_hold(deployment: Deployment, to: DeploymentStatus) -> None:
    if deployment.reason == AWAITING_APPROVAL and to not in WHILE_AWAITING_APPROVAL:
        kind = "deployment awaiting approval"
        raise IllegalTransition(kind, deployment.status, to, WHILE_AWAITING_APPROVAL)


def _stamp(deployment: Deployment, to: DeploymentStatus) -> None:
    """When it started applying (again, after waiting for its cluster) and when it became final."""
    if to is DeploymentStatus.applying:
        deployment.started_at = datetime.now(UTC)
    if to in DEPLOYMENTS.terminal:
        deployment.finished_at = datetime.now(UTC)


def _record(session: AsyncSession, what: Audit) -> None:
    audit(session, what.who, what.action, "app", what.app, what.namespace, **what.detail)
