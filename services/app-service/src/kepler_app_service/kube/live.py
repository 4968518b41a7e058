"""Live app status without asking Kubernetes per request: one watch per cluster of the Deployments Kepler
manages, folded into `apps.live` in batches. Listing 10,000 apps reads Postgres only."""

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.kube.base import ClusterUnavailable, Kube, WatchExpired
from kepler_app_service.kube.registry import ClusterRegistry
from kepler_app_service.releases.manifests import MANAGED_BY, RELEASE_ANNOTATION
from kepler_app_service.releases.rollout import rollout_status
from kepler_db import App, Cluster, Namespace
from kepler_kit.logging import get_logger

log = get_logger(__name__)
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
FLUSH_SECONDS = 0.5
Key = tuple[str, str]  # (namespace, app)


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


class LiveStatus:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], registry: ClusterRegistry) -> None:
        self._sessionmaker, self._registry = sessionmaker, registry
        self._pending: dict[Key, dict[str, Any]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def run(self, rescan_seconds: float = 30.0) -> None:
        """Keeps one watcher per registered cluster, picking up clusters added later."""
        flusher = asyncio.create_task(self._flush_forever())
        try:
            while True:
                await self.rescan()
                await asyncio.sleep(rescan_seconds)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await self.stop()

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def rescan(self) -> None:
        async with self._sessionmaker() as session:
            clusters = list(await session.scalars(select(Cluster)))
        for cluster in clusters:
            if cluster.name not in self._tasks or self._tasks[cluster.name].done():
                kube = await self._registry.client(cluster)
                self._tasks[cluster.name] = asyncio.create_task(self._watch_cluster(kube))

    async def _watch_cluster(self, kube: Kube) -> None:
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._relist(kube)
                async for kind, obj in kube.watch("Deployment", None, version, label_selector=SELECTOR):
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._note(obj, None if kind == "DELETED" else obj)
                self._registry.reached(kube.name)
            except WatchExpired:
                version = None
            except ClusterUnavailable as exc:
                self._registry.failed(exc)
                version = None
                await asyncio.sleep(5)

    async def _relist(self, kube: Kube) -> str:
        listed = await kube.list("Deployment", None, SELECTOR)
        for obj in listed.get("items") or []:
            self._note(obj, obj)
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    def _note(self, obj: dict[str, Any], live: dict[str, Any] | None) -> None:
        metadata = obj.get("metadata") or {}
        self._pending[(metadata.get("namespace", ""), metadata.get("name", ""))] = live_of(live)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # a failed write is retried with the next batch's fresher state; never fatal
                log.exception("live_status_flush_failed")

    async def flush(self) -> int:
        """Writes every status noted since the last flush; the newest per app wins."""
        batch, self._pending = self._pending, {}
        if not batch:
            return 0
        started = time.perf_counter()
        async with self._sessionmaker() as session, session.begin():
            for (namespace, app), live in batch.items():
                ns_id = select(Namespace.id).where(Namespace.name == namespace).scalar_subquery()
                await session.execute(
                    update(App).where(App.namespace_id == ns_id, App.name == app).values(live=live)
                )
        log.debug("live_status_flushed", apps=len(batch), seconds=round(time.perf_counter() - started, 4))
        return len(batch)
