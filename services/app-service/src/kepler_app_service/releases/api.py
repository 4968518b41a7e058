"""Releases, deployments (followed live over SSE), rollback, scale, restart, pods and Kubernetes events."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service import service as apps
from kepler_app_service.releases import events, manifests, repository, service
from kepler_app_service.releases.adopt import ImportResult, adopt
from kepler_app_service.releases.rollout import PodState
from kepler_app_service.releases.schemas import (
    INT32_MAX,
    AppSettingsUpdate,
    AppStatus,
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
    RollbackRequest,
    ScaleRequest,
)
from kepler_app_service.releases.stream import EventStreamResponse, stream_response
from kepler_db import models
from kepler_kit.access import Access, require
from kepler_kit.db import DbSession
from kepler_kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    error_responses,
)
from kepler_kit.names import AppName, NamespaceName
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action
from kepler_kit.problems import problem_response
from kepler_kit.text import Line
from kepler_kube.base import ClusterUnavailable, Kube
from kepler_kube.registry import ClusterRegistry

router = APIRouter(prefix="/api/v1/namespaces/{namespace}/apps/{app}", tags=["releases"])
DENIED = (Unauthorized, Forbidden, NotFound)
ReleaseInPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="A release number")]
SSE_RESPONSE = stream_response("Server-Sent Events: status, replicas, pods and auto_rollback")


async def _app(session: AsyncSession, namespace: str, app: str) -> models.App:
    return await apps.get_app(session, await apps.get_namespace(session, namespace), app)


async def _kube(request: Request, session: AsyncSession, namespace: str) -> Kube:
    registry: ClusterRegistry = request.state.clusters
    return await registry.for_namespace(session, namespace, request.state.settings.default_cluster)


async def _accepted(
    request: Request,
    session: AsyncSession,
    namespace: str,
    result: tuple[models.Deployment, int],
    response: Response,
) -> Deployment | Response:
    """201 with the deployment; when the cluster is down, 503 naming it, the deployment kept pending."""
    deployment, release = result
    location = f"{request.url.path.rsplit('/', 1)[0]}/deployments/{deployment.id}"
    try:
        kube = await _kube(request, session, namespace)
        if not request.state.clusters.recently_reached(kube.name):  # a deploy need not cost a round trip
            await kube.ping()
            request.state.clusters.reached(kube.name)
    except ClusterUnavailable as exc:
        request.state.clusters.failed(exc)
        exc.extra["deployment"] = str(deployment.id)
        exc.detail = f"{exc.detail} The deployment is recorded as pending and proceeds when it is back."
        return problem_response(exc, request.url.path, {"Location": location})
    response.headers["Location"] = location
    app = await session.get(models.App, deployment.app_id)
    return service.deployment_out(deployment, app.name if app else "", release)


@router.post(
    "/deployments",
    status_code=status.HTTP_201_CREATED,
    response_model=Deployment,
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="Deploy an image (a new release) or an existing release",
)
async def create_deployment(
    namespace: NamespaceName,
    app: AppName,
    body: DeploymentCreate,
    request: Request,
    response: Response,
    session: DbSession,
    access: Access = require(Action.deploy_create),
) -> Deployment | Response:
    result = await service.deploy(
        session, access.principal, namespace, await _app(session, namespace, app), body
    )
    return await _accepted(request, session, namespace, result, response)


@router.get("/deployments", responses=error_responses(*DENIED), summary="An app's deployments, newest first")
async def list_deployments(
    namespace: NamespaceName,
    app: AppName,
    session: DbSession,
    page: PageParams,
    _: Access = require(Action.deploy_view),
) -> DeploymentPage:
    return await service.list_deployments(session, await _app(session, namespace, app), page)


@router.get(
    "/deployments/{deployment_id}", responses=error_responses(*DENIED), summary="A deployment's latest state"
)
async def get_deployment(
    namespace: NamespaceName,
    app: AppName,
    deployment_id: uuid.UUID,
    session: DbSession,
    _: Access = require(Action.deploy_view),
) -> Deployment:
    return await service.get_deployment(session, await _app(session, namespace, app), deployment_id)


@router.get(
    "/deployments/{deployment_id}/events",
    response_class=EventStreamResponse,
    responses={**SSE_RESPONSE, **error_responses(*DENIED)},
    summary="Follow a deployment live (Server-Sent Events; resumes from Last-Event-ID)",
)
async def follow_deployment(
    namespace: NamespaceName,
    app: AppName,
    deployment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    last_event_id: Annotated[int, Header(ge=0, le=2**63 - 1, description="Resume after this event id")] = 0,
    _: Access = require(Action.deploy_view),
) -> StreamingResponse:
    await service.get_deployment(session, await _app(session, namespace, app), deployment_id)
    stream: AsyncIterator[str] = events.follow(
        request.state.sessionmaker, request.state.arq, deployment_id, last_event_id
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.post(
    "/deployments/{deployment_id}/cancel",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, Conflict),
    summary="Cancel a deployment that has not started",
)
async def cancel_deployment(
    namespace: NamespaceName,
    app: AppName,
    deployment_id: uuid.UUID,
    session: DbSession,
    access: Access = require(Action.deploy_create),
) -> None:
    await service.cancel(
        session, access.principal, namespace, await _app(session, namespace, app), deployment_id
    )


@router.post(
    "/deployments/{deployment_id}/approve",
    response_model=Deployment,
    responses=error_responses(*DENIED, Conflict),
    summary="Approve a deployment waiting for approval (someone other than its requester)",
)
async def approve_deployment(
    namespace: NamespaceName,
    app: AppName,
    deployment_id: uuid.UUID,
    session: DbSession,
    access: Access = require(Action.deploy_approve),
) -> Deployment:
    target = await _app(session, namespace, app)
    deployment = await service.approve(session, access.principal, namespace, target, deployment_id)
    release = await repository.release_by_id(session, deployment.release_id)
    return service.deployment_out(deployment, target.name, release.number)


@router.post(
    "/rollback",
    status_code=status.HTTP_201_CREATED,
    response_model=Deployment,
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Re-apply an earlier release whole (default: the last one that rolled out)",
)
async def rollback_app(
    namespace: NamespaceName,
    app: AppName,
    body: RollbackRequest,
    request: Request,
    response: Response,
    session: DbSession,
    access: Access = require(Action.app_rollback),
) -> Deployment | Response:
    target = await _app(session, namespace, app)
    result = await service.rollback(session, access.principal, namespace, target, body.to_release)
    return await _accepted(request, session, namespace, result, response)


@router.post(
    "/releases",
    status_code=status.HTTP_201_CREATED,
    response_model=Deployment,
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="Change resources, env, command/args or probes: a new release, deployed at once",
)
async def change_release(
    namespace: NamespaceName,
    app: AppName,
    body: ReleaseChange,
    request: Request,
    response: Response,
    session: DbSession,
    access: Access = require(Action.app_config),
) -> Deployment | Response:
    if not body.model_fields_set:
        raise BadRequest("Give at least one of resources, env, command, args, probes.")
    target = await _app(session, namespace, app)
    result = await service.change(session, access.principal, namespace, target, body, "change")
    return await _accepted(request, session, namespace, result, response)


@router.post(
    "/restart",
    status_code=status.HTTP_201_CREATED,
    response_model=Deployment,
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Restart every pod (a new release with a new pod template)",
)
async def restart_app(
    namespace: NamespaceName,
    app: AppName,
    request: Request,
    response: Response,
    session: DbSession,
    access: Access = require(Action.deploy_create),
) -> Deployment | Response:
    target = await _app(session, namespace, app)
    result = await service.change(session, access.principal, namespace, target, None, "restart")
    return await _accepted(request, session, namespace, result, response)


@router.post(
    "/scale",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Scale now (recorded; later releases start from this count)",
)
async def scale_app(
    namespace: NamespaceName,
    app: AppName,
    body: ScaleRequest,
    request: Request,
    session: DbSession,
    access: Access = require(Action.app_scale),
) -> None:
    kube = await _kube(request, session, namespace)
    await service.scale(
        session, access.principal, namespace, await _app(session, namespace, app), body.replicas, kube
    )


@router.patch("/settings", responses=error_responses(*DENIED), summary="Turn automatic rollback on or off")
async def update_app_settings(
    namespace: NamespaceName,
    app: AppName,
    body: AppSettingsUpdate,
    session: DbSession,
    access: Access = require(Action.app_update),
) -> AppStatus:
    target = await _app(session, namespace, app)
    target.auto_rollback = body.auto_rollback
    apps._audit(
        session, access.principal, "app.settings", "app", app, namespace, auto_rollback=body.auto_rollback
    )
    return _status(target)


@router.get("/releases", responses=error_responses(*DENIED), summary="Release history, newest first")
async def list_releases(
    namespace: NamespaceName,
    app: AppName,
    session: DbSession,
    page: PageParams,
    _: Access = require(Action.deploy_view),
) -> ReleasePage:
    return await service.list_releases(session, await _app(session, namespace, app), page)


@router.get("/releases/{number}", responses=error_responses(*DENIED), summary="One release, whole")
async def get_release(
    namespace: NamespaceName,
    app: AppName,
    number: ReleaseInPath,
    session: DbSession,
    _: Access = require(Action.deploy_view),
) -> Release:
    return service.release_out(
        await service.get_release(session, await _app(session, namespace, app), number)
    )


@router.get(
    "/releases/{number}/diff", responses=error_responses(*DENIED), summary="What changed between two releases"
)
async def diff_releases(
    namespace: NamespaceName,
    app: AppName,
    number: ReleaseInPath,
    against: Annotated[int, Query(ge=1, le=INT32_MAX, description="The release to compare with")],
    session: DbSession,
    _: Access = require(Action.deploy_view),
) -> ReleaseDiff:
    return await service.diff(session, await _app(session, namespace, app), against, number)


@router.get(
    "/status", responses=error_responses(*DENIED), summary="Live rollout status, from Kepler's own records"
)
async def get_app_status(
    namespace: NamespaceName, app: AppName, session: DbSession, _: Access = require(Action.app_view)
) -> AppStatus:
    return _status(await _app(session, namespace, app))


def _status(app: models.App) -> AppStatus:
    live = app.live or {}
    return AppStatus(
        app=app.name,
        current_release=app.current_release,
        rollout=live.get("rollout"),
        desired=live.get("desired"),
        ready=live.get("ready"),
        updated=live.get("updated"),
        available=live.get("available"),
        updated_at=live.get("at"),
    )


@router.get(
    "/pods",
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="The app's pods",
)
async def list_pods(
    namespace: NamespaceName,
    app: AppName,
    request: Request,
    session: DbSession,
    page: PageParams,
    _: Access = require(Action.pod_view),
) -> PodPage:
    target = await _app(session, namespace, app)
    kube = await _kube(request, session, namespace)
    pods = (await kube.list("Pod", namespace, _selector(target)))["items"]
    return service.pods_page([_pod(pod, target.current_release) for pod in pods], page)


@router.delete(
    "/pods/{pod}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Delete one of the app's pods (its ReplicaSet replaces it)",
)
async def delete_pod(
    namespace: NamespaceName,
    app: AppName,
    pod: Annotated[Line, StringConstraints(max_length=253), "pod name"],
    request: Request,
    session: DbSession,
    access: Access = require(Action.pod_delete),
) -> None:
    target = await _app(session, namespace, app)
    kube = await _kube(request, session, namespace)
    found = await kube.get("Pod", namespace, pod)
    labels = ((found or {}).get("metadata") or {}).get("labels") or {}
    if found is None or any(
        labels.get(k) != v for k, v in (target.selector or manifests.selector(app)).items()
    ):
        raise NotFound(f"App '{app}' has no pod '{pod}'.")
    await kube.delete("Pod", namespace, pod)
    apps._audit(session, access.principal, "pod.delete", "pod", pod, namespace, app=target.name)


@router.get(
    "/events",
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="Kubernetes events about the app, newest first",
)
async def list_kube_events(
    namespace: NamespaceName,
    app: AppName,
    request: Request,
    session: DbSession,
    page: PageParams,
    _: Access = require(Action.app_view),
) -> KubeEventPage:
    await _app(session, namespace, app)
    kube = await _kube(request, session, namespace)
    items = (await kube.list("Event", namespace))["items"]
    about = [e for e in items if _about(app, (e.get("involvedObject") or {}).get("name", ""))]
    return service.kube_events_page([_event(e) for e in about], page)


def _selector(app: models.App) -> str:
    return manifests.label_selector(app.selector or manifests.selector(app.name))


def _pod(pod: manifests.Obj, current: int | None) -> Pod:
    state = PodState.of(pod)
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return Pod(
        name=state.name,
        phase=state.phase,
        ready=state.ready,
        restarts=state.restarts,
        node=state.node,
        release=int(state.release) if state.release and state.release.isdigit() else None,
        current=state.release is not None and state.release == str(current),
        containers=[
            {"name": c.get("name"), "image": c.get("image"), "ready": c.get("ready"), "state": c.get("state")}
            for c in statuses
        ],
        created_at=(pod.get("metadata") or {}).get("creationTimestamp"),
    )


def _about(app: str, involved: str) -> bool:
    """The app's Deployment, its ReplicaSets (`app-<hash>`) and their pods; not another app `appx`."""
    return involved == app or involved.startswith(f"{app}-")


def _event(event: manifests.Obj) -> KubeEvent:
    involved = event.get("involvedObject") or {}
    return KubeEvent(
        name=(event.get("metadata") or {}).get("name", ""),
        type=event.get("type", "Normal"),
        reason=event.get("reason", ""),
        message=event.get("message", ""),
        object=f"{involved.get('kind', '')}/{involved.get('name', '')}",
        count=int(event.get("count") or (event.get("series") or {}).get("count") or 1),
        last_seen=_last_seen(event),
    )


def _last_seen(event: manifests.Obj) -> datetime | None:
    """The newest of the times an event carries: core/v1 recorders set lastTimestamp, events.k8s.io
    recorders set eventTime and, for a repeated event, series.lastObservedTime."""
    stamps = (
        (event.get("series") or {}).get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
    )
    seen = [parsed for stamp in stamps if (parsed := _timestamp(stamp)) is not None]
    return max(seen, default=None)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


namespace_router = APIRouter(prefix="/api/v1/namespaces/{namespace}", tags=["apps"])


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployments: list[AppName] | None = Field(None, max_length=500, description="Default: every Deployment")


@namespace_router.post(
    "/imports",
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Adopt Deployments already running in the namespace as apps",
)
async def import_apps(
    namespace: NamespaceName,
    body: ImportRequest,
    request: Request,
    session: DbSession,
    access: Access = require(Action.app_create),
) -> ImportResult:
    ns = await apps.get_namespace(session, namespace)
    kube = await _kube(request, session, namespace)
    only = set(body.deployments) if body.deployments is not None else None
    return await adopt(session, access.principal, ns, kube, only)


async def was_deployed(session: AsyncSession, app: models.App) -> bool:
    return app.current_release is not None or await repository.latest_release(session, app.id) is not None


async def remove_objects(request: Request, session: AsyncSession, namespace: str, app: str) -> None:
    """Deleting an app deletes what Kepler created for it; an unreachable cluster stops the delete."""
    kube = await _kube(request, session, namespace)
    for kind in ("Deployment", "Service"):
        await kube.delete(kind, namespace, app)
