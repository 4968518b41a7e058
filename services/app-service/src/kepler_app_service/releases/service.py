"""Releases and deployments: what an app runs, how it changes, how it goes back. Flushes, never commits.

Every change that defines what runs becomes a new numbered release and a deployment of it; a deployment's
job applies the objects and follows the rollout. Scale alone is applied directly (and remembered, so the
next release starts from it).
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.audit import audit
from kepler_app_service.events import about_app, emit
from kepler_app_service.releases import manifests, repository
from kepler_app_service.releases.lifecycle import Audit, begin, move
from kepler_app_service.releases.schemas import (
    Deployment,
    DeploymentCreate,
    DeploymentPage,
    KubeEvent,
    KubeEventPage,
    Pod,
    PodPage,
    Release,
    ReleaseChange,
    ReleaseDiff,
    ReleasePage,
)
from kepler_app_service.releases.spec import ReleaseSpec
from kepler_app_service.releases.states import AWAITING_APPROVAL
from kepler_db import models
from kepler_kit import contracts
from kepler_kit.context import current_request_id
from kepler_kit.errors import BadRequest, Conflict, Forbidden, NotFound
from kepler_kit.events import kinds
from kepler_kit.identity import Principal
from kepler_kit.jobs import enqueue_after_commit
from kepler_kit.pagination import Int32, PageRequest, page_of
from kepler_kube.base import ClusterUnavailable, Kube
from kepler_kube.registry import ClusterRegistry

RUN_DEPLOYMENT = contracts.RUN_DEPLOYMENT


def _spec(release: models.Release) -> ReleaseSpec:
    return ReleaseSpec.model_validate(release.spec)


async def new_release(
    session: AsyncSession, app: models.App, spec: ReleaseSpec, cause: str, who: Principal
) -> models.Release:
    latest = await repository.latest_release(session, app.id)
    release = models.Release(
        app_id=app.id,
        number=(latest.number + 1) if latest else 1,
        spec=spec.model_dump(mode="json"),
        cause=cause[:200],
        created_by=who.user_id,
    )
    session.add(release)
    await session.flush()
    namespace = await session.get(models.Namespace, app.namespace_id)
    if namespace is not None:
        emit(
            session,
            who,
            kinds.ReleaseCreated(
                **about_app(namespace, app), release=release.number, cause=release.cause, image=spec.image
            ),
        )
    return release


async def start_deployment(
    session: AsyncSession,
    app: models.App,
    release: models.Release,
    who: Principal | None,
    automatic: bool = False,
    urgent: bool = False,
) -> models.Deployment:
    """Pending deployments of the app are superseded: only the newest intent is worth rolling out.

    In a namespace that requires approval, a deploy waits for a maintainer other than its requester;
    rollbacks to a release that rolled out before (`urgent`, and the automatic ones) never wait: they are
    the emergency path.
    """
    for older in await repository.active_deployments(session, app.id):
        if older.status is models.DeploymentStatus.pending:
            await move(
                session,
                older,
                models.DeploymentStatus.superseded,
                "Superseded",
                "a newer deployment was requested",
            )
    namespace = await session.get(models.Namespace, app.namespace_id)
    waits = bool(namespace and namespace.require_deploy_approval) and not (automatic or urgent)
    deployment = models.Deployment(
        app_id=app.id,
        release_id=release.id,
        reason=AWAITING_APPROVAL if waits else None,
        message="a maintainer other than the requester must approve it" if waits else None,
        automatic=automatic,
        requested_by=who.user_id if who else None,
        replicas={},
        request_id=current_request_id(),
    )
    await begin(session, deployment, release, who)
    if not waits:
        enqueue_after_commit(session, RUN_DEPLOYMENT, str(deployment.id), "0")
    return deployment


async def approve(
    session: AsyncSession, who: Principal, ns: str, app: models.App, deployment_id: uuid.UUID
) -> models.Deployment:
    app = await repository.lock_app(session, app.id)
    deployment = await repository.deployment_in(session, app.id, deployment_id)
    if deployment is None:
        raise NotFound("No such deployment for this app.")
    if deployment.status is not models.DeploymentStatus.pending or deployment.reason != AWAITING_APPROVAL:
        raise Conflict("This deployment is not waiting for approval.")
    if deployment.requested_by is not None and deployment.requested_by == who.user_id:
        raise Forbidden("Someone other than the requester must approve a deployment.")
    audit = Audit(
        who=who,
        action="app.deploy_approve",
        app=app.name,
        namespace=ns,
        detail={"deployment": str(deployment.id)},
    )
    await move(
        session, deployment, models.DeploymentStatus.pending, None, f"approved by {who.name}", audit=audit
    )
    enqueue_after_commit(session, RUN_DEPLOYMENT, str(deployment.id), str(deployment.attempt))
    return deployment


def _merged(base: ReleaseSpec | None, body: DeploymentCreate | ReleaseChange, app: models.App) -> ReleaseSpec:
    changes = body.model_dump(exclude_unset=True, exclude={"release"})
    if base is None:
        if "image" not in changes:
            raise BadRequest("The app has no release yet: give an `image` to deploy.")
        start: dict[str, Any] = {"ports": app.ports, "replicas": app.scaled_replicas or 1}
    else:
        start = base.model_dump(exclude={"restarted_at"})
        if app.scaled_replicas is not None:
            start["replicas"] = app.scaled_replicas
        if "image" in changes and "image_digest" not in changes:
            start["image_digest"] = None  # a new image's digest is not the old one's
    return ReleaseSpec.model_validate({**start, **changes})


async def deploy(
    session: AsyncSession, who: Principal, ns: str, app: models.App, body: DeploymentCreate
) -> tuple[models.Deployment, int]:
    app = await repository.lock_app(session, app.id)
    if body.release is not None:
        if body.model_fields_set - {"release"}:
            raise BadRequest(
                "Deploy either an existing `release` as recorded, or an image with changes, not both."
            )
        release = await repository.release(session, app.id, body.release)
        if release is None:
            raise NotFound(f"App '{app.name}' has no release {body.release}.")
    else:
        base = await repository.base_release(session, app)
        spec = _merged(_spec(base) if base else None, body, app)
        if body.replicas is not None:  # the release carries the count now: a rollback restores its own
            app.scaled_replicas = None
        release = await new_release(session, app, spec, "deploy", who)
    deployment = await start_deployment(session, app, release, who)
    audit(
        session, who, "app.deploy", "app", app.name, ns, release=release.number, deployment=str(deployment.id)
    )
    return deployment, release.number


async def change(
    session: AsyncSession, who: Principal, ns: str, app: models.App, body: ReleaseChange | None, cause: str
) -> tuple[models.Deployment, int]:
    """Resources, env, command, probes, restart: a new release from the current one, deployed at once."""
    app = await repository.lock_app(session, app.id)
    base = await repository.base_release(session, app)
    if base is None:
        raise Conflict(f"App '{app.name}' has never been deployed; deploy an image first.")
    spec = _merged(_spec(base), body or ReleaseChange(), app)
    if body is None:  # restart: same spec (and scale), a new pod template
        spec = spec.model_copy(update={"restarted_at": datetime.now(UTC).isoformat(timespec="seconds")})
    release = await new_release(session, app, spec, cause, who)
    namespace = await session.get(models.Namespace, app.namespace_id)
    if body is None and namespace is not None:
        emit(session, who, kinds.AppRestarted(**about_app(namespace, app)))
    deployment = await start_deployment(session, app, release, who)
    audit(
        session,
        who,
        f"app.{cause}",
        "app",
        app.name,
        ns,
        release=release.number,
        deployment=str(deployment.id),
    )
    return deployment, release.number


async def rollback(
    session: AsyncSession, who: Principal, ns: str, app: models.App, to_release: int | None
) -> tuple[models.Deployment, int]:
    """Re-applies a recorded release whole: image, env, command, probes, resources, and its references."""
    app = await repository.lock_app(session, app.id)
    if to_release is not None:
        target = await repository.release(session, app.id, to_release)
        if target is None:
            raise NotFound(f"App '{app.name}' has no release {to_release}.")
    else:
        current = await repository.release(session, app.id, app.current_release or 0)
        target = await repository.last_good_release(session, app.id, current.id if current else uuid.uuid4())
        if target is None:
            raise Conflict(f"App '{app.name}' has no earlier release that rolled out.")
    # The emergency path skips approval only back to a state that ran: a "rollback" to a release that never
    # rolled out (one still waiting for approval, say) is a deploy and waits like one.
    urgent = await repository.rolled_out(session, app.id, target.id)
    deployment = await start_deployment(session, app, target, who, urgent=urgent)
    audit(
        session,
        who,
        "app.rollback",
        "app",
        app.name,
        ns,
        release=target.number,
        deployment=str(deployment.id),
    )
    return deployment, target.number


async def scale(
    session: AsyncSession, who: Principal, ns: str, app: models.App, replicas: int, kube: Kube
) -> None:
    """Applied directly under its own field manager, recorded on the app and in the audit log."""
    app = await repository.lock_app(session, app.id)
    if app.current_release is None:
        raise Conflict(f"App '{app.name}' has never been rolled out; deploy it first.")
    before, app.scaled_replicas = await _replicas(session, app), replicas
    await kube.apply_scale(ns, app.name, replicas)
    audit(session, who, "app.scale", "app", app.name, ns, replicas=replicas, before=before)
    namespace = await session.get(models.Namespace, app.namespace_id)
    if namespace is not None:
        emit(session, who, kinds.AppScaled(**about_app(namespace, app), replicas=replicas, before=before))


async def _replicas(session: AsyncSession, app: models.App) -> int | None:
    """How many replicas Kepler runs: the last scale, else what the current release asks for."""
    if app.scaled_replicas is not None:
        return app.scaled_replicas
    base = await repository.base_release(session, app)
    return _spec(base).replicas if base else None


async def cancel(
    session: AsyncSession, who: Principal, ns: str, app: models.App, deployment_id: uuid.UUID
) -> None:
    deployment = await repository.deployment_in(session, app.id, deployment_id)
    if deployment is None:
        raise NotFound("No such deployment for this app.")
    if deployment.status is not models.DeploymentStatus.pending:
        raise Conflict(f"Only a pending deployment can be cancelled; this one is {deployment.status.value}.")
    audit = Audit(
        who=who,
        action="app.deploy_cancel",
        app=app.name,
        namespace=ns,
        detail={"deployment": str(deployment.id)},
    )
    await move(
        session,
        deployment,
        models.DeploymentStatus.cancelled,
        "Cancelled",
        f"cancelled by {who.name}",
        audit=audit,
    )


def deployment_out(deployment: models.Deployment, app: str, release: int) -> Deployment:
    return Deployment(
        id=deployment.id,
        app=app,
        release=release,
        status=deployment.status.value,
        reason=deployment.reason,
        message=deployment.message,
        automatic=deployment.automatic,
        replicas=deployment.replicas,
        created_at=deployment.created_at,
        started_at=deployment.started_at,
        finished_at=deployment.finished_at,
    )


async def get_deployment(session: AsyncSession, app: models.App, deployment_id: uuid.UUID) -> Deployment:
    deployment = await repository.deployment_in(session, app.id, deployment_id)
    if deployment is None:
        raise NotFound("No such deployment for this app.")
    release = await repository.release_by_id(session, deployment.release_id)
    return deployment_out(deployment, app.name, release.number)


async def list_deployments(session: AsyncSession, app: models.App, page: PageRequest) -> DeploymentPage:
    rows = await repository.list_deployments(session, app.id, page.limit, page.key(datetime, uuid.UUID))
    return page_of(
        DeploymentPage,
        rows,
        page.limit,
        lambda r: [r[0].created_at, r[0].id],
        lambda r: deployment_out(r[0], app.name, r[1]),
    )


def release_out(release: models.Release) -> Release:
    return Release(
        number=release.number,
        cause=release.cause,
        spec=_spec(release),
        created_at=release.created_at,
        created_by=release.created_by,
    )


async def list_releases(session: AsyncSession, app: models.App, page: PageRequest) -> ReleasePage:
    rows = await repository.list_releases(session, app.id, page.limit, page.key(Int32))
    return page_of(ReleasePage, rows, page.limit, lambda r: [r.number], release_out)


async def get_release(session: AsyncSession, app: models.App, number: int) -> models.Release:
    release = await repository.release(session, app.id, number)
    if release is None:
        raise NotFound(f"App '{app.name}' has no release {number}.")
    return release


def _flatten(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{path}.{key}" if path else str(key)))
        return flat
    return {path: value}


async def diff(session: AsyncSession, app: models.App, a: int, b: int) -> ReleaseDiff:
    left = _flatten((await get_release(session, app, a)).spec)
    right = _flatten((await get_release(session, app, b)).spec)
    changes = [
        {"path": path, "from": left.get(path), "to": right.get(path)}
        for path in sorted(left.keys() | right.keys())
        if left.get(path) != right.get(path)
    ]
    return ReleaseDiff(from_release=a, to_release=b, changes=changes)


def objects_for(app: models.App, ns: str, release: models.Release) -> list[manifests.Obj]:
    """The release's objects, at the app's scale when someone scaled it since a deploy last named replicas:
    a rollback (automatic or not) then brings back the release's code and configuration but keeps the
    scale (as `kubectl rollout undo` copies only the pod template): scaled to 5 in an incident, an app must
    not drop to the old release's 1."""
    spec = _spec(release)
    if app.scaled_replicas is not None:
        spec = spec.model_copy(update={"replicas": app.scaled_replicas})
    return manifests.objects(app.name, ns, release.number, spec, app.selector)


_NEVER = datetime.min.replace(tzinfo=UTC)


def pods_page(pods: list[Pod], page: PageRequest) -> PodPage:
    """By name, paged in memory: the cluster answered with all of the app's pods at once."""
    after = page.key(str)
    rows = sorted((p for p in pods if after is None or p.name > after[0]), key=lambda p: p.name)
    return page_of(PodPage, rows[: page.limit + 1], page.limit, lambda p: [p.name], lambda p: p)


def _seen(event: KubeEvent) -> tuple[datetime, str]:
    return event.last_seen or _NEVER, event.name


def kube_events_page(items: list[KubeEvent], page: PageRequest) -> KubeEventPage:
    """Newest first by when each event was last seen (the cluster returns them in no useful order);
    ties, and events never seen, by name. Paged in memory, keyed on (last seen, name)."""
    rows = sorted(items, key=_seen, reverse=True)
    after = page.key(datetime, str)
    if after is not None:
        rows = [e for e in rows if _seen(e) < after]
    return page_of(KubeEventPage, rows[: page.limit + 1], page.limit, lambda e: list(_seen(e)), lambda e: e)


async def was_deployed(session: AsyncSession, app: models.App) -> bool:
    """Whether Kepler may have created objects for the app on its cluster."""
    return app.current_release is not None or await repository.latest_release(session, app.id) is not None


async def remove_objects(kube: Kube, namespace: str, app: str) -> None:
    """Deleting an app deletes what Kepler created for it; an unreachable cluster stops the delete."""
    for kind in ("Deployment", "Service"):
        await kube.delete(kind, namespace, app)


async def reachable_cluster(
    session: AsyncSession, clusters: ClusterRegistry, namespace: str, default: str | None
) -> Kube:
    """The namespace's cluster, called unless it answered moments ago (a deploy need not cost a round
    trip); raises ClusterUnavailable, recorded as the cluster's health."""
    try:
        kube = await clusters.for_namespace(session, namespace, default)
        if not clusters.recently_reached(kube.name):
            await kube.ping()
            clusters.reached(kube.name)
    except ClusterUnavailable as exc:
        clusters.failed(exc)
        raise
    return kube


def set_auto_rollback(session: AsyncSession, who: Principal, ns: str, app: models.App, enabled: bool) -> None:
    app.auto_rollback = enabled
    audit(session, who, "app.settings", "app", app.name, ns, auto_rollback=enabled)
