"""Namespace endpoints: thin, typed, every error and permission declared."""

from fastapi import APIRouter, Response, status

from kepler_app_service.dependencies import Clusters, NamespaceInPath, Settings
from kepler_app_service.namespaces import service
from kepler_app_service.namespaces.schemas import Namespace, NamespaceCreate, NamespacePage, NamespaceUpdate
from kepler_kit.access import Access, require
from kepler_kit.db import DbSession
from kepler_kit.errors import NAMESPACE_DENIALS, BadRequest, Conflict, Unauthorized, error_responses
from kepler_kit.names import NamespaceName
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action

router = APIRouter(prefix="/api/v1/namespaces", tags=["namespaces"])
DENIED = NAMESPACE_DENIALS


@router.post(
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


@router.get(
    "", responses=error_responses(Unauthorized, BadRequest), summary="List the namespaces you are a member of"
)
async def list_namespaces(
    session: DbSession, page: PageParams, access: Access = require(Action.namespace_list)
) -> NamespacePage:
    return await service.list_namespaces(session, access.principal, page)


@router.get("/{namespace}", responses=error_responses(*DENIED), summary="Get a namespace")
async def get_namespace(
    namespace: NamespaceInPath,
    session: DbSession,
    clusters: Clusters,
    settings: Settings,
    _: Access = require(Action.namespace_view),
) -> Namespace:
    out = Namespace.model_validate(namespace)
    out.cluster = await service.placement(session, clusters, namespace, settings.default_cluster)
    return out


@router.patch(
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


@router.delete(
    "/{namespace}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, Conflict),
    summary="Delete an empty namespace",
)
async def delete_namespace(
    namespace: NamespaceName, session: DbSession, access: Access = require(Action.namespace_delete)
) -> None:
    await service.delete_namespace(session, access.principal, namespace)
