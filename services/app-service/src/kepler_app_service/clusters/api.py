"""Cluster endpoints (platform admins): thin, typed, every error and permission declared."""

import uuid

from fastapi import APIRouter, status

from kepler_app_service.clusters import service
from kepler_app_service.clusters.schemas import Cluster, ClusterCreate, ClusterPage
from kepler_app_service.dependencies import Clusters, Settings
from kepler_kit.access import Access, require
from kepler_kit.db import DbSession
from kepler_kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
    error_responses,
)
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action

router = APIRouter(prefix="/api/v1/clusters", tags=["clusters"])
DENIED = (Unauthorized, Forbidden)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, Conflict, ValidationFailed),
    summary="Register a cluster",
)
async def create_cluster(
    body: ClusterCreate,
    clusters: Clusters,
    session: DbSession,
    access: Access = require(Action.cluster_manage),
) -> Cluster:
    row = await service.create_cluster(session, access.principal, clusters, body)
    return await service.cluster_out(row, clusters)


@router.get(
    "", responses=error_responses(*DENIED, BadRequest), summary="List clusters and whether they answer"
)
async def list_clusters(
    clusters: Clusters, session: DbSession, page: PageParams, _: Access = require(Action.cluster_manage)
) -> ClusterPage:
    return await service.list_clusters(session, clusters, page)


@router.post(
    "/{cluster_id}/check",
    responses=error_responses(*DENIED, NotFound),
    summary="Call the cluster now and report",
)
async def check_cluster(
    cluster_id: uuid.UUID, clusters: Clusters, session: DbSession, _: Access = require(Action.cluster_manage)
) -> Cluster:
    return await service.check_cluster(session, clusters, cluster_id)


@router.delete(
    "/{cluster_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, NotFound, Conflict),
    summary="Forget a cluster no namespace uses",
)
async def delete_cluster(
    cluster_id: uuid.UUID,
    clusters: Clusters,
    settings: Settings,
    session: DbSession,
    access: Access = require(Action.cluster_manage),
) -> None:
    await service.delete_cluster(session, access.principal, clusters, cluster_id, settings.default_cluster)
