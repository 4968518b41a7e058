"""Every query of the clusters domain."""

import uuid

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import Cluster, Namespace


async def name_taken(session: AsyncSession, name: str) -> bool:
    return bool(await session.scalar(select(func.count()).where(Cluster.name == name)))


async def list_clusters(session: AsyncSession, limit: int, after: tuple[str] | None) -> list[Cluster]:
    query = select(Cluster).order_by(Cluster.name).limit(limit + 1)
    if after:
        query = query.where(Cluster.name > after[0])
    return list(await session.scalars(query))


async def namespaces_on(
    session: AsyncSession, cluster_id: uuid.UUID, is_default: bool, limit: int = 20
) -> list[str]:
    """Namespaces bound to the cluster, and when it is the platform default, those bound to none."""
    bound = Namespace.cluster_id == cluster_id
    query = select(Namespace.name).where(or_(bound, Namespace.cluster_id.is_(None)) if is_default else bound)
    return list(await session.scalars(query.order_by(Namespace.name).limit(limit)))


async def simulated_names(session: AsyncSession) -> list[str]:
    return list(await session.scalars(select(Cluster.name).where(Cluster.simulated).order_by(Cluster.name)))


async def all_clusters(session: AsyncSession) -> list[Cluster]:
    return list(await session.scalars(select(Cluster).order_by(Cluster.name)))
