"""Every query about releases and deployments."""

import uuid
from datetime import datetime

from sqlalchemy import Select, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.releases.states import ACTIVE, AWAITING_APPROVAL
from kepler_db import App, Deployment, DeploymentEvent, DeploymentStatus, Namespace, Release
from kepler_kit.errors import NotFound


async def locked_app(session: AsyncSession, app_id: uuid.UUID) -> App | None:
    """Serialises everything that changes what an app runs: releases are numbered, one rollout at a time.
    None when the app was deleted since the caller read it (a concurrent DELETE won the lock)."""
    return await session.get(App, app_id, with_for_update=True, populate_existing=True)


async def lock_app(session: AsyncSession, app_id: uuid.UUID) -> App:
    """`locked_app` for a request: an app deleted meanwhile is a 404, as it would be a moment later."""
    app = await locked_app(session, app_id)
    if app is None:
        raise NotFound("The app was deleted while this request was handled.")
    return app


async def latest_release(session: AsyncSession, app_id: uuid.UUID) -> Release | None:
    return await session.scalar(
        select(Release).where(Release.app_id == app_id).order_by(Release.number.desc()).limit(1)
    )


async def base_release(session: AsyncSession, app: App) -> Release | None:
    """What every derived release (restart, change, scale-with-deploy, image-less deploy) starts from.

    The app's *current* release: the one that last rolled out, which a rollback moves back. Not the
    latest: after a rollback the latest is the release that was rolled back from, and building on it
    would silently undo the rollback. Before anything rolled out, the newest recorded release.
    """
    if app.current_release is not None:
        current = await release(session, app.id, app.current_release)
        if current is not None:
            return current
    return await latest_release(session, app.id)


async def release(session: AsyncSession, app_id: uuid.UUID, number: int) -> Release | None:
    return await session.scalar(select(Release).where(Release.app_id == app_id, Release.number == number))


async def release_by_id(session: AsyncSession, release_id: uuid.UUID) -> Release:
    found = await session.get(Release, release_id)
    assert found is not None  # noqa: S101  (a deployment's release exists (foreign key); narrows the type)
    return found


async def list_releases(
    session: AsyncSession, app_id: uuid.UUID, limit: int, after: tuple[int] | None
) -> list[Release]:
    query = select(Release).where(Release.app_id == app_id).order_by(Release.number.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(Release.number < after[0])
    return list(await session.scalars(query))


async def last_good_release(
    session: AsyncSession, app_id: uuid.UUID, other_than: uuid.UUID
) -> Release | None:
    """The release of the newest deployment that rolled out, other than the failing one."""
    query = (
        select(Release)
        .join(Deployment, Deployment.release_id == Release.id)
        .where(
            Deployment.app_id == app_id,
            Deployment.status == DeploymentStatus.succeeded,
            Release.id != other_than,
        )
        .order_by(Deployment.finished_at.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def rolled_out(session: AsyncSession, app_id: uuid.UUID, release_id: uuid.UUID) -> bool:
    """Whether a deployment of this release ever succeeded for the app: only then is it a known good state."""
    query = select(Deployment.id).where(
        Deployment.app_id == app_id,
        Deployment.release_id == release_id,
        Deployment.status == DeploymentStatus.succeeded,
    )
    return (await session.scalar(query.limit(1))) is not None


async def active_deployments(session: AsyncSession, app_id: uuid.UUID) -> list[Deployment]:
    query = (
        select(Deployment).where(Deployment.app_id == app_id, Deployment.status.in_(ACTIVE)).with_for_update()
    )
    return list(await session.scalars(query))


async def deployment_in(
    session: AsyncSession, app_id: uuid.UUID, deployment_id: uuid.UUID
) -> Deployment | None:
    return await session.scalar(
        select(Deployment).where(Deployment.id == deployment_id, Deployment.app_id == app_id)
    )


async def list_deployments(
    session: AsyncSession, app_id: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> list[tuple[Deployment, int]]:
    query = (
        select(Deployment, Release.number)
        .join(Release, Release.id == Deployment.release_id)
        .where(Deployment.app_id == app_id)
        .order_by(Deployment.created_at.desc(), Deployment.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(tuple_(Deployment.created_at, Deployment.id) < after)
    return [(d, n) for d, n in (await session.execute(query)).all()]


async def deployment_context(
    session: AsyncSession, deployment_id: uuid.UUID
) -> tuple[Deployment, App, str] | None:
    query = (
        select(Deployment, App, Namespace.name)
        .join(App, App.id == Deployment.app_id)
        .join(Namespace, Namespace.id == App.namespace_id)
        .where(Deployment.id == deployment_id)
    )
    row = (await session.execute(query)).first()
    return (row[0], row[1], row[2]) if row else None


async def claim(session: AsyncSession, deployment_id: uuid.UUID, attempt: int) -> bool:
    """Compare-and-set on `attempt`: of two runs of the same deployment, only one may own it."""
    query = (
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.attempt == attempt, Deployment.status.in_(ACTIVE))
        .values(attempt=attempt + 1, heartbeat_at=func.now())
        .returning(Deployment.id)
    )
    return (await session.scalar(query)) is not None


async def deployed_before(session: AsyncSession, release_id: uuid.UUID, other_than: uuid.UUID) -> bool:
    """Whether another deployment took this release to the cluster (so pods of it may run already)."""
    query = select(Deployment.id).where(Deployment.release_id == release_id, Deployment.id != other_than)
    return (await session.scalar(query.limit(1))) is not None


async def heartbeat(session: AsyncSession, deployment_id: uuid.UUID) -> bool:
    """One statement: the deployment is still being followed (False once it is no longer progressing:
    superseded, cancelled)."""
    query = (
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.status == DeploymentStatus.progressing)
        .values(heartbeat_at=func.now())
        .returning(Deployment.id)
    )
    return (await session.scalar(query)) is not None


def stale_deployments(cutoff: datetime) -> Select[uuid.UUID, int, str | None]:
    """The sweeper's query: active deployments nobody has touched lately (lost job, killed worker), with
    the request that asked for each, for the rescued run's logs."""
    heartbeat = func.coalesce(Deployment.heartbeat_at, Deployment.updated_at)
    waiting = func.coalesce(Deployment.reason, "") == AWAITING_APPROVAL  # waits for a person, not a job
    return select(Deployment.id, Deployment.attempt, Deployment.request_id).where(
        Deployment.status.in_(ACTIVE), heartbeat < cutoff, ~waiting
    )


async def deployment_status(session: AsyncSession, deployment_id: uuid.UUID) -> DeploymentStatus | None:
    return await session.scalar(select(Deployment.status).where(Deployment.id == deployment_id))


async def events_after(session: AsyncSession, deployment_id: uuid.UUID, after: int) -> list[DeploymentEvent]:
    query = (
        select(DeploymentEvent)
        .where(DeploymentEvent.deployment_id == deployment_id, DeploymentEvent.id > after)
        .order_by(DeploymentEvent.id)
    )
    return list(await session.scalars(query))
