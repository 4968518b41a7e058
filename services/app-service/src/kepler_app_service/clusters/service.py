"""Clusters (platform admins): where namespaces run. Flushes, never commits: the caller's transaction decides.

Credentials are sealed on the way in and never come back out: a cluster is shown with what the last call
to it found, not with what it holds."""

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.audit import audit
from kepler_app_service.clusters import repository
from kepler_app_service.clusters.schemas import Cluster, ClusterCreate, ClusterPage
from kepler_db import Cluster as ClusterRow
from kepler_kit.errors import Conflict, NotFound, ValidationFailed
from kepler_kit.identity import Principal
from kepler_kit.pagination import PageRequest, page_of
from kepler_kube.base import ClusterUnavailable, tls_problems
from kepler_kube.registry import ClusterRegistry


async def cluster_out(row: ClusterRow, registry: ClusterRegistry) -> Cluster:
    health = await registry.verify(row)
    return Cluster(
        id=row.id,
        name=row.name,
        api_url=row.api_url,
        in_cluster=row.in_cluster,
        simulated=row.simulated,
        has_token=row.token_sealed is not None,
        has_client_certificate=row.client_cert_sealed is not None,
        reachable=health.ok if health else None,
        detail=health.detail if health else None,
    )


async def create_cluster(
    session: AsyncSession, who: Principal, registry: ClusterRegistry, body: ClusterCreate
) -> ClusterRow:
    if await repository.name_taken(session, body.name):
        raise Conflict(f"A cluster named '{body.name}' exists.")
    await _credentials_load(body)
    row = ClusterRow(
        name=body.name,
        api_url=body.api_url,
        in_cluster=body.in_cluster,
        ca_data=body.ca_data,
        insecure_skip_tls_verify=body.insecure_skip_tls_verify,
        token_sealed=registry.seal(body.token.get_secret_value() if body.token else None),
        client_cert_sealed=registry.seal(body.client_cert),
        client_key_sealed=registry.seal(body.client_key.get_secret_value() if body.client_key else None),
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    audit(session, who, "cluster.create", "cluster", row.name)
    return row


async def _credentials_load(body: ClusterCreate) -> None:
    """Builds the TLS context the client will build, now: a certificate or key that does not load is the
    caller's error on that field, not a failure of every later call to the cluster."""
    key = body.client_key.get_secret_value() if body.client_key else None
    problems = await asyncio.to_thread(tls_problems, body.ca_data, body.client_cert, key)
    if problems:
        raise ValidationFailed(
            "; ".join(f"body.{field}: {why}" for field, why in problems.items()),
            errors=[{"loc": ["body", f], "msg": why, "type": "credentials"} for f, why in problems.items()],
        )


async def list_clusters(session: AsyncSession, registry: ClusterRegistry, page: PageRequest) -> ClusterPage:
    rows = await repository.list_clusters(session, page.limit, page.key(str))
    out = {row.id: await cluster_out(row, registry) for row in rows[: page.limit]}
    return page_of(ClusterPage, rows, page.limit, lambda row: [row.name], lambda row: out[row.id])


async def get_cluster(session: AsyncSession, cluster_id: uuid.UUID) -> ClusterRow:
    row = await session.get(ClusterRow, cluster_id)
    if row is None:
        raise NotFound("No such cluster.")
    return row


async def check_cluster(session: AsyncSession, registry: ClusterRegistry, cluster_id: uuid.UUID) -> Cluster:
    """Calls the cluster now; what it found is its health, shown rather than raised."""
    row = await get_cluster(session, cluster_id)
    try:
        await (await registry.client(row)).ping()
        registry.reached(row.name)
    except ClusterUnavailable as exc:
        registry.failed(exc)
    return await cluster_out(row, registry)


async def delete_cluster(
    session: AsyncSession,
    who: Principal,
    registry: ClusterRegistry,
    cluster_id: uuid.UUID,
    default: str | None,
) -> None:
    row = await get_cluster(session, cluster_id)
    await _unused(session, row, default)
    await session.delete(row)
    await registry.forget(row)
    audit(session, who, "cluster.delete", "cluster", row.name)


async def _unused(session: AsyncSession, row: ClusterRow, default: str | None) -> None:
    """Deleting a cluster in use would strand its namespaces (and their running apps) without a cluster."""
    is_default = row.name == default
    using = await repository.namespaces_on(session, row.id, is_default)
    if is_default:
        raise Conflict(
            f"'{row.name}' is the platform's default cluster (KEPLER_APP_SERVICE_DEFAULT_CLUSTER)"
            + (f"; namespaces on it: {', '.join(using)}." if using else "."),
            namespaces=using,
        )
    if using:
        raise Conflict(f"Namespaces still run on '{row.name}': {', '.join(using)}.", namespaces=using)
