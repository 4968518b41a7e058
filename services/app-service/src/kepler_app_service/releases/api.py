"""Releases, deployments (followed live over SSE), rollback, scale, restart, pods and Kubernetes events:
thin endpoints over releases/service.py, releases/pods.py and releases/imports.py."""

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints

from kepler_app_service.dependencies import (
    AppInPath,
    ClusterClient,
    ClusterLookup,
    ClusterWhenNeeded,
    NamespaceInPath,
)
from kepler_app_service.live.schemas import AppStatus, app_status
from kepler_app_service.releases import events, pods, repository, service
from kepler_app_service.releases.imports import import_deployments
from kepler_app_service.releases.schemas import (
    INT32_MAX,
    AppSettingsUpdate,
    Deployment,
    DeploymentCreate,
    DeploymentPage,
    ImportRequest,
    ImportResult,
    KubeEventPage,
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
    NAMESPACE_DENIALS,
    BadRequest,
    Conflict,
    ServiceUnavailable,
    error_responses,
)
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action
from kepler_kit.problems import problem_response
from kepler_kit.text import Line
from kepler_kube.base import ClusterUnavailable

router = APIRouter(prefix="/api/v1/namespaces/{namespace}/apps/{app}", tags=["releases"])
DENIED = NAMESPACE_DENIALS


# Path parameters after the app's are dependencies too: FastAPI lists an endpoint's own parameters before
# its dependencies', and the OpenAPI document keeps them in path order (generated clients follow it).
def _deployment_id(deployment_id: uuid.UUID) -> uuid.UUID:
    return deployment_id


def _release_number(number: Annotated[int, Path(ge=1, le=INT32_MAX, description="A release number")]) -> int:
    return number


def _pod_name(pod: Annotated[Line, StringConstraints(max_length=253), "pod name"]) -> str:
    return pod


DeploymentIdInPath = Annotated[uuid.UUID, Depends(_deployment_id)]
ReleaseInPath = Annotated[int, Depends(_release_number)]
PodInPath = Annotated[str, Depends(_pod_name)]
SSE_RESPONSE = stream_response("Server-Sent Events: status, replicas, pods and auto_rollback")


async def _accepted(
    request: Request,
    response: Response,
    cluster: ClusterLookup,
    app: models.App,
    result: tuple[models.Deployment, int],
) -> Deployment | Response:
    """201 with the deployment; when the cluster is down, 503 naming it, the deployment kept pending."""
    deployment, release = result
    location = f"{request.url.path.rsplit('/', 1)[0]}/deployments/{deployment.id}"
    try:
        await cluster.reachable()
    except ClusterUnavailable as exc:
        exc.extra["deployment"] = str(deployment.id)
        exc.detail = f"{exc.detail} The deployment is recorded as pending and proceeds when it is back."
        return problem_response(exc, request.url.path, {"Location": location})
    response.headers["Location"] = location
    return service.deployment_out(deployment, app.name, release)


@router.post(
    "/deployments",
    status_code=status.HTTP_201_CREATED,
    response_model=Deployment,
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="Deploy an image (a new release) or an existing release",
)
async def create_deployment(
    namespace: NamespaceInPath,
    app: AppInPath,
    body: DeploymentCreate,
    request: Request,
    response: Response,
    session: DbSession,
    cluster: ClusterWhenNeeded,
    access: Access = require(Action.deploy_create),
) -> Deployment | Response:
    result = await service.deploy(session, access.principal, namespace.name, app, body)
    return await _accepted(request, response, cluster, app, result)


@router.get("/deployments", responses=error_responses(*DENIED), summary="An app's deployments, newest first")
async def list_deployments(
    session: DbSession, page: PageParams, app: AppInPath, _: Access = require(Action.deploy_view)
) -> DeploymentPage:
    return await service.list_deployments(session, app, page)


@router.get(
    "/deployments/{deployment_id}", responses=error_responses(*DENIED), summary="A deployment's latest state"
)
async def get_deployment(
    app: AppInPath,
    deployment_id: DeploymentIdInPath,
    session: DbSession,
    _: Access = require(Action.deploy_view),
) -> Deployment:
    return await service.get_deployment(session, app, deployment_id)


@router.get(
    "/deployments/{deployment_id}/events",
    response_class=EventStreamResponse,
    responses={**SSE_RESPONSE, **error_responses(*DENIED)},
    summary="Follow a deployment live (Server-Sent Events; resumes from Last-Event-ID)",
)
async def follow_deployment(
    app: AppInPath,
    deployment_id: DeploymentIdInPath,
    request: Request,
    session: DbSession,
    last_event_id: Annotated[int, Header(ge=0, le=2**63 - 1, description="Resume after this event id")] = 0,
    _: Access = require(Action.deploy_view),
) -> StreamingResponse:
    await service.get_deployment(session, app, deployment_id)
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
    namespace: NamespaceInPath,
    app: AppInPath,
    deployment_id: DeploymentIdInPath,
    session: DbSession,
    access: Access = require(Action.deploy_create),
) -> None:
    await service.cancel(session, access.principal, namespace.name, app, deployment_id)


@router.post(
    "/deployments/{deployment_id}/approve",
    response_model=Deployment,
    responses=error_responses(*DENIED, Conflict),
    summary="Approve a deployment waiting for approval (someone other than its requester)",
)
async def approve_deployment(
    namespace: NamespaceInPath,
    app: AppInPath,
    deployment_id: DeploymentIdInPath,
    session: DbSession,
    access: Access = require(Action.deploy_approve),
) -> Deployment:
    deployment = await service.approve(session, access.principal, namespace.name, app, deployment_id)
    release = await repository.release_by_id(session, deployment.release_id)
    return service.deployment_out(deployment, app.name, release.number)


@router.post(
    "/rollback",
    status_code=status.HTTP_201_CREATED,
    response_model=Deployment,
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Re-apply an earlier release whole (default: the last one that rolled out)",
)
async def rollback_app(
    namespace: NamespaceInPath,
    app: AppInPath,
    body: RollbackRequest,
    request: Request,
    response: Response,
    session: DbSession,
    cluster: ClusterWhenNeeded,
    access: Access = require(Action.app_rollback),
) -> Deployment | Response:
    result = await service.rollback(session, access.principal, namespace.name, app, body.to_release)
    return await _accepted(request, response, cluster, app, result)


@router.post(
    "/releases",
    status_code=status.HTTP_201_CREATED,
    response_model=Deployment,
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="Change resources, env, command/args or probes: a new release, deployed at once",
)
async def change_release(
    namespace: NamespaceInPath,
    app: AppInPath,
    body: ReleaseChange,
    request: Request,
    response: Response,
    session: DbSession,
    cluster: ClusterWhenNeeded,
    access: Access = require(Action.app_config),
) -> Deployment | Response:
    if not body.model_fields_set:
        raise BadRequest("Give at least one of resources, env, command, args, probes.")
    result = await service.change(session, access.principal, namespace.name, app, body, "change")
    return await _accepted(request, response, cluster, app, result)


@router.post(
    "/restart",
    status_code=status.HTTP_201_CREATED,
    response_model=Deployment,
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Restart every pod (a new release with a new pod template)",
)
async def restart_app(
    namespace: NamespaceInPath,
    app: AppInPath,
    request: Request,
    response: Response,
    session: DbSession,
    cluster: ClusterWhenNeeded,
    access: Access = require(Action.deploy_create),
) -> Deployment | Response:
    result = await service.change(session, access.principal, namespace.name, app, None, "restart")
    return await _accepted(request, response, cluster, app, result)


@router.post(
    "/scale",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Scale now (recorded; later releases start from this count)",
)
async def scale_app(
    body: ScaleRequest,
    session: DbSession,
    kube: ClusterClient,
    namespace: NamespaceInPath,
    app: AppInPath,
    access: Access = require(Action.app_scale),
) -> None:
    await service.scale(session, access.principal, namespace.name, app, body.replicas, kube)


@router.patch("/settings", responses=error_responses(*DENIED), summary="Turn automatic rollback on or off")
async def update_app_settings(
    namespace: NamespaceInPath,
    app: AppInPath,
    body: AppSettingsUpdate,
    session: DbSession,
    access: Access = require(Action.app_update),
) -> AppStatus:
    service.set_auto_rollback(session, access.principal, namespace.name, app, body.auto_rollback)
    return app_status(app)


@router.get("/releases", responses=error_responses(*DENIED), summary="Release history, newest first")
async def list_releases(
    session: DbSession, page: PageParams, app: AppInPath, _: Access = require(Action.deploy_view)
) -> ReleasePage:
    return await service.list_releases(session, app, page)


@router.get("/releases/{number}", responses=error_responses(*DENIED), summary="One release, whole")
async def get_release(
    app: AppInPath, number: ReleaseInPath, session: DbSession, _: Access = require(Action.deploy_view)
) -> Release:
    return service.release_out(await service.get_release(session, app, number))


@router.get(
    "/releases/{number}/diff", responses=error_responses(*DENIED), summary="What changed between two releases"
)
async def diff_releases(
    app: AppInPath,
    number: ReleaseInPath,
    against: Annotated[int, Query(ge=1, le=INT32_MAX, description="The release to compare with")],
    session: DbSession,
    _: Access = require(Action.deploy_view),
) -> ReleaseDiff:
    return await service.diff(session, app, against, number)


@router.get(
    "/status", responses=error_responses(*DENIED), summary="Live rollout status, from Kepler's own records"
)
async def get_app_status(app: AppInPath, _: Access = require(Action.app_view)) -> AppStatus:
    return app_status(app)


@router.get(
    "/pods",
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="The app's pods",
)
async def list_pods(
    page: PageParams,
    namespace: NamespaceInPath,
    app: AppInPath,
    kube: ClusterClient,
    _: Access = require(Action.pod_view),
) -> PodPage:
    return await pods.list_pods(kube, namespace.name, app, page)


@router.delete(
    "/pods/{pod}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Delete one of the app's pods (its ReplicaSet replaces it)",
)
async def delete_pod(
    namespace: NamespaceInPath,
    app: AppInPath,
    pod: PodInPath,
    kube: ClusterClient,
    session: DbSession,
    access: Access = require(Action.pod_delete),
) -> None:
    await pods.delete_pod(session, access.principal, kube, namespace.name, app, pod)


@router.get(
    "/events",
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="Kubernetes events about the app, newest first",
)
async def list_kube_events(
    page: PageParams,
    namespace: NamespaceInPath,
    app: AppInPath,
    kube: ClusterClient,
    _: Access = require(Action.app_view),
) -> KubeEventPage:
    return await pods.kube_events(kube, namespace.name, app, page)


imports_router = APIRouter(prefix="/api/v1/namespaces/{namespace}", tags=["apps"])


@imports_router.post(
    "/imports",
    responses=error_responses(*DENIED, Conflict, ServiceUnavailable),
    summary="Adopt Deployments already running in the namespace as apps",
)
async def import_apps(
    namespace: NamespaceInPath,
    body: ImportRequest,
    kube: ClusterClient,
    session: DbSession,
    access: Access = require(Action.app_create),
) -> ImportResult:
    only = set(body.deployments) if body.deployments is not None else None
    return await import_deployments(session, access.principal, namespace, kube, only)
