"""App endpoints: thin, typed, every error and permission declared."""

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from kepler_app_service.apps import service
from kepler_app_service.apps.schemas import App, AppCreate, AppPage, AppUpdate
from kepler_app_service.dependencies import AppInPath, ClusterWhenNeeded, NamespaceInPath
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
from kepler_kit.text import Line

router = APIRouter(prefix="/api/v1/namespaces/{namespace}/apps", tags=["apps"])
DENIED = NAMESPACE_DENIALS


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, Conflict),
    summary="Create an app",
)
async def create_app(
    namespace: NamespaceInPath,
    body: AppCreate,
    session: DbSession,
    response: Response,
    access: Access = require(Action.app_create),
) -> App:
    app = await service.create_app(session, access.principal, namespace, body)
    response.headers["Location"] = f"/api/v1/namespaces/{namespace.name}/apps/{app.name}"
    return service.app_out(app, namespace.name)


@router.get("", responses=error_responses(*DENIED, BadRequest), summary="List the apps of a namespace")
async def list_apps(
    session: DbSession, page: PageParams, namespace: NamespaceInPath, _: Access = require(Action.app_view)
) -> AppPage:
    return await service.list_apps(session, namespace, page)


@router.get("/{app}", responses=error_responses(*DENIED), summary="Get an app")
async def get_app(namespace: NamespaceInPath, app: AppInPath, _: Access = require(Action.app_view)) -> App:
    return service.app_out(app, namespace.name)


@router.patch("/{app}", responses=error_responses(*DENIED), summary="Update an app's source settings")
async def update_app(
    namespace: NamespaceInPath,
    app: AppInPath,
    body: AppUpdate,
    session: DbSession,
    access: Access = require(Action.app_update),
) -> App:
    return service.app_out(
        await service.update_app(session, access.principal, namespace, app, body), namespace.name
    )


@router.delete(
    "/{app}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="Delete an app and its Kubernetes objects (confirm by name)",
)
async def delete_app(
    confirm: Annotated[Line, Query(description="Must equal the app's name")],
    session: DbSession,
    cluster: ClusterWhenNeeded,
    namespace: NamespaceInPath,
    app: AppInPath,
    access: Access = require(Action.app_delete),
) -> None:
    await service.delete_app(session, access.principal, namespace, app, confirm, cluster.client)
