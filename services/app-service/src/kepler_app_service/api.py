"""Namespace, member and app endpoints: thin, typed, every error and permission declared."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from kepler_app_service import service
from kepler_app_service.kube.placement import placement
from kepler_app_service.releases.api import remove_objects, was_deployed
from kepler_app_service.schemas import (
    App,
    AppCreate,
    AppPage,
    AppUpdate,
    Member,
    MemberCreate,
    MemberPage,
    MemberUpdate,
    Namespace,
    NamespaceCreate,
    NamespacePage,
    NamespaceUpdate,
)
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
from kepler_kit.text import Line

namespaces = APIRouter(prefix="/api/v1/namespaces", tags=["namespaces"])
members = APIRouter(prefix="/api/v1/namespaces/{namespace}/members", tags=["members"])
apps = APIRouter(prefix="/api/v1/namespaces/{namespace}/apps", tags=["apps"])

DENIED = (Unauthorized, Forbidden, NotFound)


@namespaces.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, Conflict),
    summary="Create a namespace (platform admins); the creator becomes its owner",
)
async def create_namespace(
    body: NamespaceCreate,
    session: DbSession,
    response: Response,
    access: Access = require(Action.namespace_create),
) -> Namespace:
    namespace = await service.create_namespace(session, access.principal, body)
    response.headers["Location"] = f"/api/v1/namespaces/{namespace.name}"
    return Namespace.model_validate(namespace)


@namespaces.get(
    "", responses=error_responses(Unauthorized, BadRequest), summary="List the namespaces you are a member of"
)
async def list_namespaces(
    session: DbSession, page: PageParams, access: Access = require(Action.namespace_list)
) -> NamespacePage:
    return await service.list_namespaces(session, access.principal, page)


@namespaces.get("/{namespace}", responses=error_responses(*DENIED), summary="Get a namespace")
async def get_namespace(
    namespace: NamespaceName, request: Request, session: DbSession, _: Access = require(Action.namespace_view)
) -> Namespace:
    row = await service.get_namespace(session, namespace)
    out = Namespace.model_validate(row)
    default = request.state.settings.default_cluster
    out.cluster = await placement(session, request.state.clusters, row, default)
    return out


@namespaces.patch(
    "/{namespace}", responses=error_responses(*DENIED), summary="Update a namespace and its policies"
)
async def update_namespace(
    namespace: NamespaceName,
    body: NamespaceUpdate,
    session: DbSession,
    access: Access = require(Action.namespace_update),
) -> Namespace:
    return Namespace.model_validate(
        await service.update_namespace(session, access.principal, namespace, body)
    )


@namespaces.delete(
    "/{namespace}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, Conflict),
    summary="Delete an empty namespace",
)
async def delete_namespace(
    namespace: NamespaceName, session: DbSession, access: Access = require(Action.namespace_delete)
) -> None:
    await service.delete_namespace(session, access.principal, namespace)


@members.get("", responses=error_responses(*DENIED, BadRequest), summary="List a namespace's members")
async def list_members(
    namespace: NamespaceName, session: DbSession, page: PageParams, _: Access = require(Action.member_view)
) -> MemberPage:
    return await service.list_members(session, await service.get_namespace(session, namespace), page)


@members.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, Conflict),
    summary="Add a user to a namespace by email",
)
async def add_member(
    namespace: NamespaceName,
    body: MemberCreate,
    session: DbSession,
    access: Access = require(Action.member_manage),
) -> Member:
    ns = await service.get_namespace(session, namespace)
    return await service.add_member(session, access.principal, ns, body)


@members.patch(
    "/{user_id}",
    responses=error_responses(*DENIED, Conflict),
    summary="Change a member's role in a namespace",
)
async def change_member_role(
    namespace: NamespaceName,
    user_id: uuid.UUID,
    body: MemberUpdate,
    session: DbSession,
    access: Access = require(Action.member_manage),
) -> Member:
    ns = await service.get_namespace(session, namespace)
    return await service.change_member_role(session, access.principal, ns, user_id, body)


@members.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, Conflict),
    summary="Remove a member (never the last owner)",
)
async def remove_member(
    namespace: NamespaceName,
    user_id: uuid.UUID,
    session: DbSession,
    access: Access = require(Action.member_manage),
) -> None:
    ns = await service.get_namespace(session, namespace)
    await service.remove_member(session, access.principal, ns, user_id)


@apps.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, Conflict),
    summary="Create an app",
)
async def create_app(
    namespace: NamespaceName,
    body: AppCreate,
    session: DbSession,
    response: Response,
    access: Access = require(Action.app_create),
) -> App:
    ns = await service.get_namespace(session, namespace)
    app = await service.create_app(session, access.principal, ns, body)
    response.headers["Location"] = f"/api/v1/namespaces/{namespace}/apps/{app.name}"
    return service.app_out(app, namespace)


@apps.get("", responses=error_responses(*DENIED, BadRequest), summary="List the apps of a namespace")
async def list_apps(
    namespace: NamespaceName, session: DbSession, page: PageParams, _: Access = require(Action.app_view)
) -> AppPage:
    return await service.list_apps(session, await service.get_namespace(session, namespace), page)


@apps.get("/{app}", responses=error_responses(*DENIED), summary="Get an app")
async def get_app(
    namespace: NamespaceName, app: AppName, session: DbSession, _: Access = require(Action.app_view)
) -> App:
    ns = await service.get_namespace(session, namespace)
    return service.app_out(await service.get_app(session, ns, app), namespace)


@apps.patch("/{app}", responses=error_responses(*DENIED), summary="Update an app's source settings")
async def update_app(
    namespace: NamespaceName,
    app: AppName,
    body: AppUpdate,
    session: DbSession,
    access: Access = require(Action.app_update),
) -> App:
    ns = await service.get_namespace(session, namespace)
    return service.app_out(await service.update_app(session, access.principal, ns, app, body), namespace)


@apps.delete(
    "/{app}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, BadRequest, Conflict, ServiceUnavailable),
    summary="Delete an app and its Kubernetes objects (confirm by name)",
)
async def delete_app(
    namespace: NamespaceName,
    app: AppName,
    confirm: Annotated[Line, Query(description="Must equal the app's name")],
    request: Request,
    session: DbSession,
    access: Access = require(Action.app_delete),
) -> None:
    ns = await service.get_namespace(session, namespace)
    deployed = await was_deployed(session, await service.get_app(session, ns, app))
    await service.delete_app(session, access.principal, ns, app, confirm)
    if deployed:  # the row goes only if the objects went too: an unreachable cluster fails the whole delete
        await remove_objects(request, session, namespace, app)
