"""Namespace and app endpoints: thin, typed, every error declared."""

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from kepler_app_service import service
from kepler_app_service.schemas import (
    App,
    AppCreate,
    AppPage,
    AppUpdate,
    Namespace,
    NamespaceCreate,
    NamespacePage,
    NamespaceUpdate,
)
from kepler_kit.db import DbSession
from kepler_kit.errors import BadRequest, Conflict, NotFound, error_responses
from kepler_kit.identity import CurrentPrincipal
from kepler_kit.names import AppName, NamespaceName
from kepler_kit.pagination import PageParams

namespaces = APIRouter(prefix="/api/v1/namespaces", tags=["namespaces"])
apps = APIRouter(prefix="/api/v1/namespaces/{namespace}/apps", tags=["apps"])

Ns = NamespaceName
AppPath = AppName


@namespaces.post(
    "", status_code=status.HTTP_201_CREATED, responses=error_responses(Conflict), summary="Create a namespace"
)
async def create_namespace(
    body: NamespaceCreate, session: DbSession, who: CurrentPrincipal, response: Response
) -> Namespace:
    namespace = await service.create_namespace(session, who, body)
    response.headers["Location"] = f"/api/v1/namespaces/{namespace.name}"
    return Namespace.model_validate(namespace)


@namespaces.get("", responses=error_responses(BadRequest), summary="List namespaces")
async def list_namespaces(session: DbSession, page: PageParams) -> NamespacePage:
    return await service.list_namespaces(session, page)


@namespaces.get("/{namespace}", responses=error_responses(NotFound), summary="Get a namespace")
async def get_namespace(namespace: Ns, session: DbSession) -> Namespace:
    return Namespace.model_validate(await service.get_namespace(session, namespace))


@namespaces.patch("/{namespace}", responses=error_responses(NotFound), summary="Update a namespace")
async def update_namespace(
    namespace: Ns, body: NamespaceUpdate, session: DbSession, who: CurrentPrincipal
) -> Namespace:
    return Namespace.model_validate(await service.update_namespace(session, who, namespace, body))


@namespaces.delete(
    "/{namespace}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(NotFound, Conflict),
    summary="Delete an empty namespace",
)
async def delete_namespace(namespace: Ns, session: DbSession, who: CurrentPrincipal) -> None:
    await service.delete_namespace(session, who, namespace)


@apps.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(NotFound, Conflict),
    summary="Create an app",
)
async def create_app(
    namespace: Ns, body: AppCreate, session: DbSession, who: CurrentPrincipal, response: Response
) -> App:
    ns = await service.get_namespace(session, namespace)
    app = await service.create_app(session, who, ns, body)
    response.headers["Location"] = f"/api/v1/namespaces/{namespace}/apps/{app.name}"
    return service.app_out(app, namespace)


@apps.get("", responses=error_responses(NotFound, BadRequest), summary="List the apps of a namespace")
async def list_apps(namespace: Ns, session: DbSession, page: PageParams) -> AppPage:
    return await service.list_apps(session, await service.get_namespace(session, namespace), page)


@apps.get("/{app}", responses=error_responses(NotFound), summary="Get an app")
async def get_app(namespace: Ns, app: AppPath, session: DbSession) -> App:
    ns = await service.get_namespace(session, namespace)
    return service.app_out(await service.get_app(session, ns, app), namespace)


@apps.patch("/{app}", responses=error_responses(NotFound), summary="Update an app's source settings")
async def update_app(
    namespace: Ns, app: AppPath, body: AppUpdate, session: DbSession, who: CurrentPrincipal
) -> App:
    ns = await service.get_namespace(session, namespace)
    return service.app_out(await service.update_app(session, who, ns, app, body), namespace)


@apps.delete(
    "/{app}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(NotFound, BadRequest),
    summary="Delete an app (confirm by name)",
)
async def delete_app(
    namespace: Ns,
    app: AppPath,
    confirm: Annotated[str, Query(description="Must equal the app's name")],
    session: DbSession,
    who: CurrentPrincipal,
) -> None:
    ns = await service.get_namespace(session, namespace)
    await service.delete_app(session, who, ns, app, confirm)
