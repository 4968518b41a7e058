"""Several workers: each cluster's live-status watch runs in exactly one of them (the holder of the
cluster's lease), and when that worker is killed with SIGKILL another one takes the watch over within 15 s."""

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from kepler_app_service.live.watch import lease_name
from kepler_app_service.releases.manifests import MANAGED_BY
from kepler_db import App, Cluster, Namespace, NamespaceStatus
from kepler_kit.db import create_sessionmaker
from kepler_kit.leases import APPLICATION_NAME, holder
from kepler_kit.testing.database import TestDatabase
from kepler_kubefake import KubeFake

Spawn = Callable[[dict[str, str], Path], subprocess.Popen[bytes]]  # the `app_worker` fixture
TAKEOVER_SECONDS = 15.0  # the acceptance bound (issue #9), a wait timeout
START_SECONDS = 60.0  # two workers importing the Kubernetes client on a busy machine: a wait bound only
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
    },
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "registry.example.com/web:1"}]},
        },
    },
}


def identity(process: subprocess.Popen[bytes]) -> str:
    """The name a worker's leases go by (`Leases.identity`)."""
    return f"{process.pid}@{socket.gethostname()}"


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {what} within {within} s")


async def seed(engine: AsyncEngine, fake: KubeFake) -> Cluster:
    """Cluster `test` (the fake), namespace `team-a` on it with app `web`, and web's Deployment there."""
    async with create_sessionmaker(engine)() as session, session.begin():
        cluster = Cluster(name="test", api_url=fake.url)
        session.add(cluster)
        await session.flush()
        namespace = Namespace(name="team-a", status=NamespaceStatus.active, cluster_id=cluster.id)
        session.add(namespace)
        await session.flush()
        session.add(App(namespace_id=namespace.id, name="web", git_url=None, ports=[]))
    fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    fake.create(DEPLOYMENT)
    return cluster


async def web_live(engine: AsyncEngine) -> dict[str, Any]:
    async with create_sessionmaker(engine)() as session:
        live = await session.scalar(select(App.live).where(App.name == "web"))
        return live or {}


async def contenders(engine: AsyncEngine) -> set[str]:
    """The workers whose lease connections are open: both must be up before the holder is killed."""
    async with engine.connect() as conn:
        rows = await conn.scalars(
            text(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE application_name LIKE :prefix AND datname = current_database()"
            ),
            {"prefix": APPLICATION_NAME + "%"},
        )
        return {name.removeprefix(APPLICATION_NAME) for name in rows}


async def lease_holder(engine: AsyncEngine, cluster: Cluster) -> str | None:
    async with create_sessionmaker(engine)() as session:
        return await holder(session, lease_name(cluster.id))


async def test_killing_the_watching_worker_hands_the_cluster_to_the_other_within_15_s(
    scratch_engine: AsyncEngine,
    scratch: TestDatabase,
    redis_url: str,
    queue_name: str,
    app_worker: Spawn,
    tmp_path: Path,
) -> None:
    """Two workers, one cluster: exactly one holds the cluster's lease and watches. After `kill -9` of that
    one, the other holds the lease and a change made in the cluster after the kill (a scale-up: new pods
    turning ready) reaches the app's live status within 15 s of the kill."""
    engine = scratch_engine
    async with KubeFake.start(ready_delay=0.0, time_scale=0.01, bookmark_interval=0.2) as fake:
        cluster = await seed(engine, fake)
        env = {
            "KEPLER_DATABASE_URL": scratch.url,
            "KEPLER_REDIS_URL": redis_url,
            "KEPLER_QUEUE_NAME": queue_name,
        }
        workers = {
            identity(w): w for w in (app_worker(env, tmp_path / "a.log"), app_worker(env, tmp_path / "b.log"))
        }

        async def watched() -> bool:
            return (await web_live(engine)).get("ready") == 1 and await contenders(engine) == set(workers)

        await until(watched, START_SECONDS, "watched with both workers contending")
        held_by = await lease_holder(engine, cluster)
        assert held_by in workers
        (survivor,) = set(workers) - {held_by}

        killed_at = time.monotonic()
        workers[held_by].send_signal(signal.SIGKILL)
        workers[held_by].wait(timeout=10)
        async with httpx.AsyncClient(base_url=fake.url) as kubectl:
            scaled = await kubectl.patch(
                "/apis/apps/v1/namespaces/team-a/deployments/web",
                json={"spec": {"replicas": 3}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            assert scaled.status_code == 200, scaled.text

        async def taken_over() -> bool:
            return (await web_live(engine)).get("ready") == 3

        await until(taken_over, TAKEOVER_SECONDS - (time.monotonic() - killed_at), "taken over")
        assert await lease_holder(engine, cluster) == survivor
        assert workers[survivor].poll() is None
