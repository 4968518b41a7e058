"""app-service: namespaces, apps, releases and their life on Kubernetes."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from kepler_app_service import SERVICE
from kepler_app_service.apps.api import router as apps
from kepler_app_service.clusters import repository
from kepler_app_service.clusters.api import router as clusters
from kepler_app_service.clusters.clients import cluster_registry, preload_kubernetes_client
from kepler_app_service.members.api import router as members
from kepler_app_service.namespaces.api import router as namespaces
from kepler_app_service.releases.api import imports_router as imports
from kepler_app_service.releases.api import router as releases
from kepler_app_service.settings import AppServiceSettings
from kepler_app_service.stats.api import router as stats
from kepler_app_service.stats.export import exporting
from kepler_kit.health import Check
from kepler_kit.service_app import create_service_app
from kepler_kube.registry import ClusterRegistry

# What the service serves (besides health and status); tests walk their request bodies.
ROUTERS = (namespaces, members, apps, releases, imports, clusters, stats)


def _lifespan(settings: AppServiceSettings) -> Any:
    """The cluster clients, and the delivery metrics' Prometheus export."""

    @asynccontextmanager
    async def lifespan(state: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        registry = cluster_registry(settings)
        preload = asyncio.create_task(preload_kubernetes_client(state["sessionmaker"]))
        try:
            async with exporting(state["sessionmaker"], settings.dora_refresh_seconds):
                yield {"clusters": registry, "kube_client_loaded": preload}
        finally:
            preload.cancel()
            await registry.close()

    return lifespan


async def clusters_check(state: dict[str, Any]) -> Check:
    """Reports clusters that failed their last call or whose credentials do not load; one cluster down does
    not make the service unready, but a database it cannot read does (never a 500: readiness reports)."""
    loaded, _ = await asyncio.wait({state["kube_client_loaded"]}, timeout=1.5)
    if not loaded:
        return Check(name="clusters", ok=False, detail="loading the Kubernetes client")
    registry: ClusterRegistry = state["clusters"]
    try:
        async with state["sessionmaker"]() as session:
            clusters = await repository.all_clusters(session)
    except Exception as exc:  # as the kit's database check: the reason is shown, never raised
        return Check(name="clusters", ok=False, detail=f"cannot read the clusters: {type(exc).__name__}")
    for cluster in clusters:
        registry.probe(cluster)
    healths = [(cluster.name, await registry.verify(cluster)) for cluster in clusters]
    down = [f"{name} ({health.detail})" for name, health in healths if health and not health.ok]
    unknown = [name for name, health in healths if health is None]
    parts = [f"unreachable: {'; '.join(down)}"] if down else []
    parts += [f"not called yet: {', '.join(unknown)}"] if unknown else []
    detail = "; ".join(parts) or "all reachable"
    simulated = [cluster.name for cluster in clusters if cluster.simulated]
    if simulated:
        detail += f"; SIMULATED (sandbox, nothing really runs): {', '.join(simulated)}"
    return Check(name="clusters", ok=True, detail=detail)


def create_app(settings: AppServiceSettings | None = None) -> FastAPI:
    settings = settings or AppServiceSettings()
    return create_service_app(
        service=SERVICE,
        title="Kepler app-service",
        description="Namespaces, apps, releases and their life on Kubernetes.",
        settings=settings,
        routers=ROUTERS,
        checks=[clusters_check],
        extra_lifespan=_lifespan(settings),
    )
