"""A worker killed with SIGKILL mid-rollout loses nothing: another worker finishes the deployment, once."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kepler_app_service.releases import service
from kepler_app_service.releases.schemas import DeploymentCreate
from kepler_db import App, Cluster, Deployment, DeploymentEvent, DeploymentStatus, Namespace, NamespaceStatus
from kepler_kit.db import create_sessionmaker, transaction
from kepler_kit.identity import Principal
from kepler_kit.jobs import create_arq_pool
from kepler_kit.testing.database import TestDatabase, create_test_database, drop_test_database
from kepler_kubefake import KubeFake

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def scratch(test_database: TestDatabase) -> Iterator[TestDatabase]:
    database = create_test_database(test_database.server_url, f"kepler_kill_{secrets.token_hex(4)}")
    yield database
    drop_test_database(database)


@pytest.fixture
async def engine(scratch: TestDatabase) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(scratch.url)
    yield engine
    await engine.dispose()


def worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "kepler_kit.worker", "kepler_app_service.tasks.WorkerSettings"]
    with log.open("ab") as sink:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)


async def status_of(engine: AsyncEngine, deployment_id: object) -> Deployment:
    async with create_sessionmaker(engine)() as session:
        row = await session.get(Deployment, deployment_id)
        assert row is not None
        return row


async def until(
    engine: AsyncEngine, deployment_id: object, wanted: set[DeploymentStatus], within: float
) -> Deployment:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        row = await status_of(engine, deployment_id)
        if row.status in wanted:
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"deployment still {row.status} after {within} s")


async def test_killed_worker_deploy_completes_exactly_once(
    engine: AsyncEngine, scratch: TestDatabase, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    async with KubeFake.start(ready_delay=2.5, time_scale=0.05) as fake:
        sessionmaker = create_sessionmaker(engine)
        arq = await create_arq_pool(redis_url, queue_name)
        try:
            async with transaction(sessionmaker, arq, queue_name) as session:
                cluster = Cluster(name="test", api_url=fake.url)
                session.add(cluster)
                await session.flush()
                ns = Namespace(name="team-a", status=NamespaceStatus.active, cluster_id=cluster.id)
                session.add(ns)
                await session.flush()
                app = App(namespace_id=ns.id, name="web", git_url="https://g.example/web.git", ports=[])
                session.add(app)
                await session.flush()
                body = DeploymentCreate(image="registry.example.com/web:1", replicas=2)
                deployment, _ = await service.deploy(session, Principal(None, "test"), "team-a", app, body)
        finally:
            await arq.aclose()

        env = {
            **os.environ,
            "KEPLER_DATABASE_URL": scratch.url,
            "KEPLER_REDIS_URL": redis_url,
            "KEPLER_QUEUE_NAME": queue_name,
            "KEPLER_APP_SERVICE_DEPLOY_STALE_SECONDS": "2",
            "KEPLER_APP_SERVICE_WATCH_TIMEOUT_SECONDS": "1",
        }
        first = worker(env, tmp_path / "worker.log")
        try:
            await until(engine, deployment.id, {DeploymentStatus.progressing}, within=30)
            first.send_signal(signal.SIGKILL)  # mid-rollout: pods are not ready yet
            first.wait(timeout=10)
            await asyncio.sleep(2.5)  # its heartbeat goes stale
            second = worker(env, tmp_path / "worker.log")
            try:
                done = await until(engine, deployment.id, {DeploymentStatus.succeeded}, within=45)
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=15)
        finally:
            if first.poll() is None:
                first.kill()

        assert done.attempt == 2  # claimed by the killed worker, then by the second
        async with sessionmaker() as session:
            statuses = [
                e.data["status"]
                for e in await session.scalars(
                    select(DeploymentEvent)
                    .where(DeploymentEvent.deployment_id == deployment.id, DeploymentEvent.kind == "status")
                    .order_by(DeploymentEvent.id)
                )
            ]
        assert statuses.count("succeeded") == 1
        live = fake.get("Deployment", "web", "team-a")
        assert live is not None
        assert live["metadata"]["generation"] == 1  # the second apply changed nothing
        assert len(fake.objects("ReplicaSet", "team-a")) == 1
