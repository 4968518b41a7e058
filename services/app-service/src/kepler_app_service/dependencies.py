"""Typed path dependencies: what an endpoint works on (its namespace, its app, the namespace's cluster
client) and the process's settings and cluster registry, each looked up once and declared by type.

The kit lifts an endpoint's `require(...)` out of dependency solving and runs it first, so these look-ups
never run for a caller who may not act on the namespace: a denied caller does not learn whether it exists.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.apps import service as apps
from kepler_app_service.namespaces import service as namespaces
from kepler_app_service.releases import service as releases
from kepler_app_service.settings import AppServiceSettings
from kepler_db import models
from kepler_kit.db import DbSession
from kepler_kit.names import AppName, NamespaceName
from kepler_kube.base import Kube
from kepler_kube.registry import ClusterRegistry


def _settings(request: Request) -> AppServiceSettings:
    settings: AppServiceSettings = request.state.settings
    return settings


def _clusters(request: Request) -> ClusterRegistry:
    clusters: ClusterRegistry = request.state.clusters
    return clusters


Settings = Annotated[AppServiceSettings, Depends(_settings)]
Clusters = Annotated[ClusterRegistry, Depends(_clusters)]


async def _namespace(namespace: NamespaceName, session: DbSession) -> models.Namespace:
    return await namespaces.get_namespace(session, namespace)


NamespaceInPath = Annotated[models.Namespace, Depends(_namespace)]


def _app_name(app: AppName) -> str:
    return app


async def _app(
    namespace: NamespaceInPath, name: Annotated[str, Depends(_app_name)], session: DbSession
) -> models.App:
    """The namespace's path parameter comes before the app's, in the OpenAPI document as in the path."""
    return await apps.get_app(session, namespace, name)


AppInPath = Annotated[models.App, Depends(_app)]


async def _cluster_client(
    namespace: NamespaceName, session: DbSession, clusters: Clusters, settings: Settings
) -> Kube:
    return await clusters.for_namespace(session, namespace, settings.default_cluster)


ClusterClient = Annotated[Kube, Depends(_cluster_client)]


@dataclass(frozen=True, kw_only=True)
class ClusterLookup:
    """The namespace's cluster client, looked up only when the endpoint gets that far: a deploy is recorded
    before its cluster is asked (a cluster that is down leaves a pending deployment), and deleting an app
    never deployed needs no cluster at all."""

    session: AsyncSession
    clusters: ClusterRegistry
    namespace: str
    default: str | None

    async def client(self) -> Kube:
        return await self.clusters.for_namespace(self.session, self.namespace, self.default)

    async def reachable(self) -> Kube:
        """The client, called unless it answered moments ago; raises ClusterUnavailable."""
        return await releases.reachable_cluster(self.session, self.clusters, self.namespace, self.default)


def _cluster_lookup(
    namespace: NamespaceName, session: DbSession, clusters: Clusters, settings: Settings
) -> ClusterLookup:
    return ClusterLookup(
        session=session, clusters=clusters, namespace=namespace, default=settings.default_cluster
    )


ClusterWhenNeeded = Annotated[ClusterLookup, Depends(_cluster_lookup)]
