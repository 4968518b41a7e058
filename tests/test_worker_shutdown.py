"""Workers as `make run` starts them (`kepler_devstack.workers`): a stop leaves nothing open behind."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import create_async_engine

from kepler_db import Cluster
from kepler_devstack.embedded import start_redis_async
from kepler_kit.db import create_sessionmaker
from kepler_kit.testing.database import TestDatabase, create_test_database, drop_test_database
from kepler_kit.worker import heartbeat_key
from kepler_kubefake import KubeFake

ROOT = Path(__file__).resolve().parent.parent
# PEM-shaped, but no certificate: building an SSL context from it raises ssl.SSLError.
BROKEN_CA = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@pytest.fixture
def scratch(test_database: TestDatabase) -> Iterator[TestDatabase]:
    """The worker is another process: it needs committed rows, not the test's rolled-back transaction."""
    database = create_test_database(test_database.server_url, f"kepler_stop_{secrets.token_hex(4)}")
    yield database
    drop_test_database(database)


async def register_clusters(database_url: str, fake_url: str, *, broken: bool) -> None:
    engine = create_async_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            session.add(Cluster(name="sandbox", api_url=fake_url, simulated=True))
            await session.flush()
            if broken:
                session.add(Cluster(name="broken", api_url="https://127.0.0.1:9", ca_data=BROKEN_CA))
    finally:
        await engine.dispose()


def start_workers(env: dict[str, str]) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "kepler_devstack.workers", "kepler_app_service.tasks.WorkerSettings"]
    pipe = subprocess.PIPE
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=pipe, stderr=pipe, text=True)


async def wait_for_heartbeat(redis_url: str, queue: str, worker: subprocess.Popen[str]) -> None:
    """Signals only once the worker runs: before that, SIGTERM would kill it during its imports."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 60
        while not await client.exists(heartbeat_key(queue)):
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "no heartbeat"
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def test_stopping_the_workers_closes_every_cluster_client(
    scratch: TestDatabase, redis_url: str, queue_name: str
) -> None:
    """aiohttp prints "Unclosed client session" when a kubernetes ApiClient is dropped unclosed. It did at
    every stop once live status had failed (here: a cluster whose CA cannot be loaded), because the
    worker's shutdown re-raised that failure before closing the cluster clients."""
    async with KubeFake.start(ready_delay=0.0) as fake:
        await register_clusters(scratch.url, fake.url, broken=True)
        env = {**os.environ, "KEPLER_DATABASE_URL": scratch.url, "KEPLER_REDIS_URL": redis_url,
               "KEPLER_QUEUE_NAME": queue_name}  # fmt: skip
        worker = start_workers(env)
        try:
            await wait_for_heartbeat(redis_url, queue_name, worker)
            worker.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(worker.communicate, timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert worker.returncode == 0, stderr
    assert "Unclosed client session" not in stderr
    assert "Unclosed connector" not in stderr


async def test_workers_that_lose_redis_still_close_every_cluster_client(
    scratch: TestDatabase, queue_name: str, tmp_path: Path
) -> None:
    """Redis going away ends a worker on its own: the process exits for the supervisor to restart it, and
    it used to skip every worker's shutdown on the way out ("Unclosed client session" in `make run`)."""
    redis = await start_redis_async(tmp_path / "redis", persist=False)
    try:
        async with KubeFake.start(ready_delay=0.0) as fake:
            await register_clusters(scratch.url, fake.url, broken=False)
            env = {**os.environ, "KEPLER_DATABASE_URL": scratch.url, "KEPLER_REDIS_URL": redis.url,
                   "KEPLER_QUEUE_NAME": queue_name}  # fmt: skip
            worker = start_workers(env)
            try:
                await wait_for_heartbeat(redis.url, queue_name, worker)
                while not fake.requests:  # noqa: ASYNC110  (live status has built its cluster client)
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(redis.stop)
                _, stderr = await asyncio.to_thread(worker.communicate, timeout=60)
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
    finally:
        await asyncio.to_thread(redis.stop)
    assert worker.returncode == 1, stderr
    assert "Unclosed client session" not in stderr
