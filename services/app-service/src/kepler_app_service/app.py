"""app-service: namespaces, apps, releases and their life on Kubernetes."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from kepler_app_service.api import apps, members, namespaces
from kepler_app_service.kube.api import router as clusters
from kepler_app_service.releases.api import namespace_router as imports
from kepler_app_service.releases.api import router as releases
from kepler_app_service.service import SERVICE
from kepler_app_service.settings import AppServiceSettings
from kepler_app_service.tasks import cluster_registry, preload_kubernetes_client
from kepler_db import Cluster
from kepler_kit.health import Check
from kepler_kit.service_app import create_service_app


def _clusters_lifespan(settings: AppServiceSettings) -> Any:
    @asynccontextmanager
    async def lifespan(state: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        registry = cluster_registry(settings)
        preload = asyncio.create_task(preload_kubernetes_client(state["sessionmaker"]))
        try:
            yield {"clusters": registry, "kube_client_loaded": preload}
        finally:
            preload.cancel()
            await registry.close()

    return lifespan


async def clusters_check(state: dict[str, Any]) -> Check:
    """Reports clusters that failed their last call; one cluster down does not make the service unready."""
    loaded, _ = await asyncio.wait({state["kube_client_loaded"]}, timeout=1.5)
    if not loaded:
        return Check(name="clusters", ok=False, detail="loading the Kubernetes client")

    down = sorted(name for name, health in state["clusters"].health.items() if not health.ok)
    detail = f"unreachable: {', '.join(down)}" if down else "all reachable"
    async with state["sessionmaker"]() as session:
        simulated = list(await session.scalars(select(Cluster.name).where(Cluster.simulated)))
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
        routers=[namespaces, members, apps, releases, imports, clusters],
        checks=[clusters_check],
        extra_lifespan=_clusters_lifespan(settings),
    )
