"""One pooled client per cluster, built on first use and reused; what each cluster last answered."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import Cluster, Namespace
from kepler_kit.crypto import SecretBox
from kepler_kit.errors import Conflict
from kepler_kube.base import (
    BadCredentials,
    ClusterCredentials,
    ClusterUnavailable,
    Kube,
    tls_problems,
)

IN_CLUSTER_URL = "https://kubernetes.default.svc"
IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105  (a file path, not a secret)
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
        self._verified: set[tuple[uuid.UUID, object]] = set()  # (cluster, version) whose credentials load
        self._probes: dict[uuid.UUID, asyncio.Task[None]] = {}
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
            try:
                kube = self._factory(self.credentials(cluster))
            except Exception as exc:  # ssl.SSLError, a key that no longer opens (InvalidTag), a file
                raise await self._unusable(cluster, exc) from exc
            self._clients[cluster.id] = (version, kube)
            return kube

    async def _unusable(self, cluster: Cluster, exc: Exception) -> BadCredentials:
        """Building a client makes no call, so whatever it fails on is the stored configuration: a problem
        for this cluster alone (503 naming it and the field, its health down), never a 500 or the others'."""
        problems = await asyncio.to_thread(self._problems, cluster)
        error = BadCredentials(cluster.name, _summary(problems) or _why(exc))
        self.failed(error)
        return error

    async def verify(self, cluster: Cluster) -> Health | None:
        """What Kepler knows of the cluster: its last call, or, for one not called yet, whether its
        credentials load at all (checked once per version, off the event loop, without calling it)."""
        key = (cluster.id, cluster.updated_at)
        if cluster.name not in self.health and key not in self._verified:
            problems = await asyncio.to_thread(self._problems, cluster)
            if problems:
                self.failed(BadCredentials(cluster.name, _summary(problems)))
            self._verified.add(key)
        return self.health.get(cluster.name)

    def probe(self, cluster: Cluster, every: float = 30.0) -> None:
        """Calls a cluster not heard from in `every` seconds, in the background: readiness then reports what
        clusters answer without waiting on one (the call's own bound is the client's timeout)."""
        health = self.health.get(cluster.name)
        if (health and time.monotonic() - health.checked_at < every) or cluster.id in self._probes:
            return
        task = asyncio.create_task(self._probe(cluster))
        self._probes[cluster.id] = task
        task.add_done_callback(lambda _: self._probes.pop(cluster.id, None))

    async def _probe(self, cluster: Cluster) -> None:
        try:
            await (await self.client(cluster)).ping()
            self.reached(cluster.name)
        except ClusterUnavailable as exc:
            self.failed(exc)
        except Exception as exc:  # any other answer to a plain LIST: not a cluster Kepler can use
            self.failed(ClusterUnavailable(cluster.name, _why(exc)[:200]))

    def _problems(self, cluster: Cluster) -> dict[str, str]:
        try:
            creds = self.credentials(cluster)
        except Exception as exc:  # sealed under another platform key
            return {"credentials": f"do not open: {_why(exc)}"}
        return tls_problems(creds.ca_data, creds.client_cert, creds.client_key)

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

    async def forget(self, cluster: Cluster) -> None:
        self.health.pop(cluster.name, None)
        cached = self._clients.pop(cluster.id, None)
        if cached:
            await cached[1].close()

    async def close(self) -> None:
        for probe in list(self._probes.values()):
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
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


def _summary(problems: dict[str, str]) -> str:
    return "; ".join(f"`{field}` {why}" for field, why in problems.items())


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None
