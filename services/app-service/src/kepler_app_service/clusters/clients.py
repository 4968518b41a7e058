"""The cluster clients both processes use: the registry (sealed credentials → one client per cluster) and
the deferred load of kubernetes-asyncio. The API's lifespan and the worker's start-up each build their own."""

import asyncio
import importlib

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.settings import AppServiceSettings
from kepler_db import Cluster
from kepler_kit.crypto import SecretBox
from kepler_kit.logging import get_logger
from kepler_kube.base import ClusterCredentials, Kube
from kepler_kube.registry import ClusterRegistry

log = get_logger(__name__)
CLUSTER_SECRETS = "cluster-credentials"


def cluster_registry(settings: AppServiceSettings) -> ClusterRegistry:
    def connect(credentials: ClusterCredentials) -> Kube:
        from kepler_kube.client import KubernetesCluster  # ~100 MB: loaded once a cluster is used

        return KubernetesCluster(credentials, watch_seconds=settings.watch_timeout_seconds)

    return ClusterRegistry(SecretBox(settings.secret_key.get_secret_value(), CLUSTER_SECRETS), connect)


async def preload_kubernetes_client(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """Loads kubernetes-asyncio off the event loop, but only when clusters are registered: without any,
    the process never pays its ~100 MB; with some, the first deploy does not wait for the import."""
    try:
        async with sessionmaker() as session:
            if not await session.scalar(select(func.count()).select_from(Cluster)):
                return False
    except Exception:  # Postgres away at start: load it anyway rather than fail readiness for good
        log.warning("clusters_unknown_loading_kubernetes_client", exc_info=True)
    await asyncio.to_thread(importlib.import_module, "kepler_kube.client")
    return True
