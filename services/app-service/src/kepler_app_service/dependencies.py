"""Typed path dependencies: what an endpoint works on (its namespace, its app, the namespace's cluster
client) and the process's settings and cluster registry, each looked up once and declared by type.

The kit lifts an endpoint's `require(...)` out of dependency solving and runs it first, so these look-ups
never run for a caller who may not act on the namespace: a denied caller does not learn whether it exists.
"""

from typing import Annotated

from fastapi import Depends, Request

from kepler_app_service.apps import service as apps
from kepler_app_service.namespaces import service as namespaces
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
