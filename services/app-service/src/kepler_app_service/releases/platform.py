"""What the platform event log hears of deployments: requested, approved, and each final state, with the
times delivery metrics are computed from. Called by `lifecycle` only, in the move's transaction."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.events import Subject, about_app, emit
from kepler_app_service.releases.states import AWAITING_APPROVAL
from kepler_db import Deployment, DeploymentStatus, models
from kepler_kit.events import kinds
from kepler_kit.identity import Principal

_OUTCOMES: dict[DeploymentStatus, type[kinds.DeploymentOutcome]] = {
    DeploymentStatus.succeeded: kinds.DeploymentSucceeded,
    DeploymentStatus.failed: kinds.DeploymentFailed,
    DeploymentStatus.rolled_back: kinds.DeploymentRolledBack,
}


async def _subject(session: AsyncSession, deployment: Deployment) -> Subject:
    """Rows the caller has already loaded come from the session, without a query."""
    app = await session.get(models.App, deployment.app_id)
    namespace = await session.get(models.Namespace, app.namespace_id) if app else None
    if app is None or namespace is None:
        return {}
    return about_app(namespace, app)


async def requested(
    session: AsyncSession, deployment: Deployment, release: models.Release, who: Principal | None
) -> None:
    subject = await _subject(session, deployment)
    held = deployment.reason == AWAITING_APPROVAL
    common = {"deployment_id": deployment.id, "release": release.number, "automatic": deployment.automatic}
    emit(
        session,
        who,
        kinds.DeploymentRequested(**subject, **common, cause=release.cause, awaiting_approval=held),
    )
    if held:
        emit(session, who, kinds.ApprovalRequested(**subject, **common))


async def moved(
    session: AsyncSession,
    deployment: Deployment,
    approved: bool,
    who: Principal | None,
    to_release: int | None,
) -> None:
    """Bookkeeping moves (claimed, following, back to pending) are not news; the others are."""
    status = deployment.status
    if not (approved or status in _OUTCOMES or status in _ENDED):
        return
    release = await session.get(models.Release, deployment.release_id)
    if release is None:
        return
    subject = await _subject(session, deployment)
    common = {"deployment_id": deployment.id, "release": release.number, "automatic": deployment.automatic}
    if approved:
        emit(session, who, kinds.DeploymentApproved(**subject, **common))
    elif status in _ENDED:
        emit(session, who, _ENDED[status](**subject, **common))
    else:
        newest = await session.scalar(
            select(func.max(models.Release.number)).where(models.Release.app_id == deployment.app_id)
        )
        rollback = newest is not None and release.number < newest
        emit(session, None, _outcome(deployment, release, subject, to_release, rollback))


_ENDED: dict[DeploymentStatus, type[kinds.DeploymentEvent]] = {
    DeploymentStatus.superseded: kinds.DeploymentSuperseded,
    DeploymentStatus.cancelled: kinds.DeploymentCancelled,
}


def _outcome(
    deployment: Deployment, release: models.Release, subject: Subject, to_release: int | None, rollback: bool
) -> kinds.DeploymentOutcome:
    extra = {"to_release": to_release} if deployment.status is DeploymentStatus.rolled_back else {}
    return _OUTCOMES[deployment.status](
        **subject,
        deployment_id=deployment.id,
        release=release.number,
        automatic=deployment.automatic,
        requested_at=deployment.created_at,
        release_created_at=release.created_at,
        committed_at=_committed_at(release),
        rollback=rollback,
        reason=deployment.reason,
        message=deployment.message,
        **extra,
    )


def _committed_at(release: models.Release) -> datetime | None:
    """A release built from a commit records the commit's time (build-service sets `source.committed_at`)."""
    source = release.spec.get("source")
    value = source.get("committed_at") if isinstance(source, dict) else None
    return datetime.fromisoformat(value) if isinstance(value, str) else None
