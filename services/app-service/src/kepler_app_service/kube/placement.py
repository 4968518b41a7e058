"""Where a namespace runs, as its API shows it: its cluster and what this process last found there."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.schemas import NamespaceCluster
from kepler_db import Cluster, Namespace
from kepler_kube.registry import ClusterRegistry


async def placement(
    session: AsyncSession, registry: ClusterRegistry, namespace: Namespace, default: str | None
) -> NamespaceCluster | None:
    """The namespace's cluster and what this process knows of it; None when it is bound to none at all."""
    if namespace.cluster_id is not None:
        cluster = await session.get(Cluster, namespace.cluster_id)
    else:
        cluster = await session.scalar(select(Cluster).where(Cluster.name == default)) if default else None
    if cluster is None:
        return None
    health = await registry.verify(cluster)
    return NamespaceCluster(
        name=cluster.name, reachable=health.ok if health else None, detail=health.detail if health else None
    )
