"""Live app status without asking Kubernetes per request: one watch per cluster of the Deployments Kepler
manages, folded into `apps.live` in batches. Listing 10,000 apps reads Postgres only. With several workers,
each cluster is watched by the holder of its lease only, and a batch is written only under its lease."""

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prometheus_client import Counter
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.releases.manifests import MANAGED_BY, RELEASE_ANNOTATION
from kepler_app_service.releases.rollout import rollout_status
from kepler_db import App, Cluster, Namespace
from kepler_kit.leases import Lease, Leases
from kepler_kit.logging import get_logger
from kepler_kit.metrics import REGISTRY
from kepler_kube.base import ClusterUnavailable, Kube, KubeError, WatchExpired
from kepler_kube.registry import ClusterRegistry

log = get_logger(__name__)
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
FLUSH_SECONDS = 0.5
ERRORS = Counter(
    "kepler_live_status_errors_total",
    "Live-status failures: rescans and flushes (Postgres), watches (by cluster); each is retried",
    ["stage", "cluster"],
    registry=REGISTRY,
)
Key = tuple[str, str]  # (namespace, app)
Noted = tuple[Lease | None, dict[str, Any]]  # an app's live status, and the lease it was seen under


def lease_name(cluster_id: uuid.UUID) -> str:
    """One lease per cluster: with N workers, each cluster is watched exactly once."""
    return f"live-status:{cluster_id}"


def live_of(deployment: dict[str, Any] | None) -> dict[str, Any]:
    if deployment is None:
        return {"rollout": "absent", "at": datetime.now(UTC).isoformat()}
    rollout = rollout_status(deployment)
    state = "complete" if rollout.done else "failed" if rollout.failed else "progressing"
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    return {
        **rollout.counts,
        "rollout": state,
        "release": annotations.get(RELEASE_ANNOTATION),
        "at": datetime.now(UTC).isoformat(),
    }


@dataclass(frozen=True)
class Backoff:
    """Seconds before a failed cluster's next try: doubling from `first`, never more than `cap`."""

    first: float = 1.0
    cap: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.first * 2 ** min(failures - 1, 32)))


class LiveStatus:
    """Each cluster's watch is its own task: a cluster that cannot be reached, or whose credentials do not
    load, reports its state in the registry and retries with a capped backoff while the others carry on."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: ClusterRegistry,
        default_cluster: str | None = None,
        retry: Backoff | None = None,
        leases: Leases | None = None,
    ) -> None:
        """Without `leases` every cluster is watched here (one worker)."""
        self._sessionmaker, self._registry = sessionmaker, registry
        self._default, self._retry, self._leases = default_cluster, retry or Backoff(), leases
        self._pending: dict[Key, Noted] = {}
        self._relisted: dict[uuid.UUID, tuple[Cluster, set[Key], Lease | None]] = {}  # what a LIST found
        self._tasks: dict[uuid.UUID, tuple[object, asyncio.Task[None]]] = {}  # by cluster: (version, watch)

    async def run(self, rescan_seconds: float = 30.0, retry_seconds: float = 5.0) -> None:
        """Keeps one watcher per registered cluster, picking up clusters added, changed or removed later."""
        flusher = asyncio.create_task(self._flush_forever())
        try:
            while True:
                scanned = await self._rescan_once()
                await asyncio.sleep(rescan_seconds if scanned else min(retry_seconds, rescan_seconds))
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await self.stop()

    async def _rescan_once(self) -> bool:
        try:
            await self.rescan()
        except Exception:  # Postgres away: the watches go on, and the rescan is tried again soon
            ERRORS.labels("rescan", "").inc()
            log.exception("live_status_rescan_failed")
            return False
        return True

    async def stop(self) -> None:
        for _, task in self._tasks.values():
            await _cancel(task)
        self._tasks.clear()

    async def rescan(self) -> None:
        async with self._sessionmaker() as session:
            clusters = {cluster.id: cluster for cluster in await session.scalars(select(Cluster))}
        for cluster_id in set(self._tasks) - set(clusters):
            await _cancel(self._tasks.pop(cluster_id)[1])
        for cluster in clusters.values():
            running = self._tasks.get(cluster.id)
            if running and running[0] == cluster.updated_at and not running[1].done():
                continue
            if running:
                await _cancel(running[1])  # new credentials: a new client and a fresh LIST
            self._tasks[cluster.id] = (cluster.updated_at, asyncio.create_task(self._watch(cluster)))

    async def _watch(self, cluster: Cluster) -> None:
        if self._leases is None:
            await self._watch_cluster(cluster)
        else:  # stops as soon as the lease is lost; a new holder starts from a fresh LIST
            await self._leases.run_while_held(lease_name(cluster.id), partial(self._watch_cluster, cluster))

    async def _watch_cluster(self, cluster: Cluster, lease: Lease | None = None) -> None:
        version: str | None = None
        failures = 0
        while True:
            try:
                kube = await self._registry.client(cluster)  # bad credentials fail this cluster only
                if version is None:
                    version = await self._relist(kube, cluster, lease)
                    self._registry.reached(cluster.name)
                async for kind, obj in kube.watch("Deployment", None, version, label_selector=SELECTOR):
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._note(obj, None if kind == "DELETED" else obj, lease)
                self._registry.reached(cluster.name)
                failures = 0
            except WatchExpired:
                version = None
            except (
                Exception
            ) as exc:  # unreachable, refused (401/403), a bad answer: back off, then a fresh LIST
                self._failed(cluster, exc)
                version, failures = None, failures + 1
                await asyncio.sleep(self._retry.delay(failures))

    def _failed(self, cluster: Cluster, exc: Exception) -> None:
        error = exc if isinstance(exc, ClusterUnavailable) else ClusterUnavailable(cluster.name, _named(exc))
        self._registry.failed(error)
        ERRORS.labels("watch", cluster.name).inc()
        log.warning("live_status_watch_failed", cluster=cluster.name, error=error.detail)

    async def _relist(self, kube: Kube, cluster: Cluster, lease: Lease | None) -> str:
        listed = await kube.list("Deployment", None, SELECTOR)
        seen: set[Key] = set()
        for obj in listed.get("items") or []:
            seen.add(self._note(obj, obj, lease))
        self._relisted[cluster.id] = (cluster, seen, lease)
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    def _note(self, obj: dict[str, Any], live: dict[str, Any] | None, lease: Lease | None) -> Key:
        metadata = obj.get("metadata") or {}
        key = (metadata.get("namespace", ""), metadata.get("name", ""))
        self._pending[key] = (lease, live_of(live))
        return key

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # the batch is kept and written with the next one; never fatal
                ERRORS.labels("flush", "").inc()
                log.exception("live_status_flush_failed")

    async def flush(self) -> int:
        """Writes what the LISTs and watches found since the last flush; the newest per app wins. A batch that
        cannot be written (Postgres away) is kept for the next flush, so no change is lost to an outage."""
        batch, self._pending = self._pending, {}
        relisted, self._relisted = self._relisted, {}
        if not batch and not relisted:
            return 0
        started = time.perf_counter()
        try:
            async with self._sessionmaker() as session, session.begin():
                leases = {lease for lease, _ in batch.values()} | {lease for *_, lease in relisted.values()}
                lost = await _fenced_out(session, leases)
                for cluster, seen, lease in relisted.values():
                    if lease not in lost:
                        await self._mark_vanished(session, cluster, seen)
                await _write(
                    session, {key: live for key, (lease, live) in batch.items() if lease not in lost}
                )
        except BaseException:
            self._pending, self._relisted = {**batch, **self._pending}, {**relisted, **self._relisted}
            raise
        log.debug("live_status_flushed", apps=len(batch), seconds=round(time.perf_counter() - started, 4))
        return len(batch)

    async def _mark_vanished(self, session: AsyncSession, cluster: Cluster, seen: set[Key]) -> None:
        """A LIST is the whole truth for its cluster: an app whose Deployment it did not return is `absent`
        (deleted while the watch was down, or the cluster lost it), whatever the last event said."""
        on_cluster = Namespace.cluster_id == cluster.id
        if cluster.name == self._default:
            on_cluster = or_(on_cluster, Namespace.cluster_id.is_(None))
        rows = await session.execute(
            select(App.id, Namespace.name, App.name, App.live)
            .join(Namespace, Namespace.id == App.namespace_id)
            .where(on_cluster)
        )
        gone = [
            app_id
            for app_id, namespace, name, live in rows
            if (live or {}).get("rollout") not in (None, "absent") and (namespace, name) not in seen
        ]
        if gone:
            await session.execute(update(App).where(App.id.in_(gone)).values(live=live_of(None)))


def _named(exc: Exception) -> str:
    if isinstance(exc, KubeError):  # e.g. 403: Kepler may not list Deployments (RBAC)
        return f"the API server answered {exc.answered} {exc.reason}: {exc.message}"
    return type(exc).__name__


async def _fenced_out(session: AsyncSession, leases: set[Lease | None]) -> set[Lease | None]:
    """The leases lost since their entries were noted: those entries are dropped, not written (the new
    holder lists the cluster afresh). Fenced in the writing transaction, see `Lease.fence`."""
    lost: set[Lease | None] = {
        lease for lease in leases if lease is not None and not await lease.fence(session)
    }
    if lost:
        log.warning("live_status_fenced_out", leases=sorted(str(lease and lease.name) for lease in lost))
    return lost


async def _write(session: AsyncSession, batch: dict[Key, dict[str, Any]]) -> None:
    for (namespace, app), live in batch.items():
        ns_id = select(Namespace.id).where(Namespace.name == namespace).scalar_subquery()
        await session.execute(update(App).where(App.namespace_id == ns_id, App.name == app).values(live=live))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
