"""One pooled client per cluster, built on first use and reused; what each cluster last answered."""

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.kube.base import ClusterCredentials, ClusterUnavailable, Kube
from kepler_db import Cluster, Namespace
from kepler_kit.crypto import SecretBox
from kepler_kit.errors import Conflict

IN_CLUSTER_URL = "https://kubernetes.default.svc"
IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
IN_CLUSTER_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


@dataclass
class Health:
    ok: bool
    detail: str
    checked_at: float


class ClusterRegistry:
    def __init__(self, box: SecretBox, factory: Callable[[ClusterCredentials], Kube]) -> None:

        self._box, self._factory = box, factory
        self._clients: dict[uuid.UUID, tuple[object, Kube]] = {}
        self.health: dict[str, Health] = {}
        self.namespaces: set[tuple[str, str]] = set()  # (cluster, namespace) known to exist
        self._lock = asyncio.Lock()

    def credentials(self, cluster: Cluster) -> ClusterCredentials:
        if cluster.in_cluster:
            return ClusterCredentials(
                cluster.name, IN_CLUSTER_URL, _read(IN_CLUSTER_TOKEN), _read(IN_CLUSTER_CA)
            )
        return ClusterCredentials(
            name=cluster.name,
            api_url=cluster.api_url or "",
            token=self._open(cluster.token_sealed),
            ca_data=cluster.ca_data,
            client_cert=self._open(cluster.client_cert_sealed),
            client_key=self._open(cluster.client_key_sealed),
            insecure_skip_tls_verify=cluster.insecure_skip_tls_verify,
        )

    def _open(self, sealed: bytes | None) -> str | None:
        return self._box.open(sealed).decode() if sealed else None

    def seal(self, secret: str | None) -> bytes | None:
        return self._box.seal(secret.encode()) if secret else None

    async def client(self, cluster: Cluster) -> Kube:
        """Rebuilt only when the cluster's row changed (new credentials)."""
        version = cluster.updated_at
        cached = self._clients.get(cluster.id)
        if cached and cached[0] == version:
            return cached[1]
        async with self._lock:
            cached = self._clients.get(cluster.id)
            if cached and cached[0] == version:
                return cached[1]
            if cached:
                await cached[1].close()
            kube = self._factory(self.credentials(cluster))
            self._clients[cluster.id] = (version, kube)
            return kube

    async def for_namespace(self, session: AsyncSession, namespace: str, default: str | None) -> Kube:
        cluster = await cluster_of(session, namespace, default)
        return await self.client(cluster)

    def recently_reached(self, name: str, within: float = 15.0) -> bool:
        health = self.health.get(name)
        return health is not None and health.ok and time.monotonic() - health.checked_at < within

    def reached(self, name: str) -> None:
        self.health[name] = Health(True, "reachable", time.monotonic())

    def failed(self, error: ClusterUnavailable) -> None:
        self.health[error.cluster] = Health(False, error.detail or "unreachable", time.monotonic())

    async def forget(self, cluster_id: uuid.UUID) -> None:
        cached = self._clients.pop(cluster_id, None)
        if cached:
            await cached[1].close()

    async def close(self) -> None:
        for _, kube in self._clients.values():
            await kube.close()
        self._clients.clear()


async def cluster_of(session: AsyncSession, namespace: str, default: str | None) -> Cluster:
    """The namespace's own cluster, or the platform default for namespaces bound to none."""
    query = (
        select(Cluster).join(Namespace, Namespace.cluster_id == Cluster.id).where(Namespace.name == namespace)
    )
    cluster = await session.scalar(query)
    if cluster is None and default:
        cluster = await session.scalar(select(Cluster).where(Cluster.name == default))
    if cluster is None:
        raise Conflict(
            f"Namespace '{namespace}' is bound to no cluster, and no default cluster is configured."
        )
    return cluster


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None
