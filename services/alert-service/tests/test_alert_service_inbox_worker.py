"""alert-service's worker as deployed: it follows the inbox consumer, so an event committed by any
service reaches the inboxes with nothing else to ask for it."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from kepler_alert_service.inbox.consumer import NAME
from kepler_alert_service.testing import World, build_world
from kepler_db import EventConsumer, Notification
from kepler_kit.db import create_sessionmaker
from kepler_kit.events import publish
from kepler_kit.events.kinds import DeploymentFailed
from kepler_kit.testing.database import TestDatabase, create_test_database, drop_test_database

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 60  # for a worker that never gets there: a hang, not a measurement
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def scratch(test_database: TestDatabase) -> Iterator[TestDatabase]:
    """The worker is another process: it needs committed rows, not the test's rolled-back transaction."""
    database = create_test_database(test_database.server_url, f"kepler_inbox_{secrets.token_hex(4)}")
    yield database
    drop_test_database(database)


@pytest.fixture
async def committed(scratch: TestDatabase) -> AsyncIterator[Sessions]:
    engine = create_async_engine(scratch.url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def wait_until(what: str, rows: Callable[[], Awaitable[int]], worker: subprocess.Popen[str]) -> None:
    """Until `rows` finds some."""
    deadline = time.monotonic() + DEADLINE_S
    while not await rows():
        assert worker.poll() is None, f"the worker exited: {worker.communicate()[1]}"
        assert time.monotonic() < deadline, f"the worker never {what}"
        await asyncio.sleep(0.05)


def count(sessions: Sessions, query: Select[int]) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        async with sessions() as session:
            return int(await session.scalar(query) or 0)

    return run


async def deploy_failed(sessions: Sessions, world: World) -> None:
    """As app-service would publish it: committed with the change it tells of."""
    now = datetime.now(UTC)
    event = DeploymentFailed(
        namespace_id=world.namespaces["team-a"].id,
        namespace="team-a",
        app_id=world.apps["web"].id,
        app="web",
        deployment_id=uuid.uuid4(),
        release=1,
        requested_at=now,
        release_created_at=now,
    )
    async with sessions() as session, session.begin():
        publish(session, event, service="app-service")


async def test_the_worker_delivers_what_is_committed(
    scratch: TestDatabase, committed: Sessions, redis_url: str, queue_name: str
) -> None:
    async with committed() as session, session.begin():
        world = await build_world(session)
    env = {**os.environ, "KEPLER_DATABASE_URL": scratch.url, "KEPLER_REDIS_URL": redis_url,
           "KEPLER_QUEUE_NAME": queue_name}  # fmt: skip
    argv = [sys.executable, "-m", "kepler_kit.worker", "kepler_alert_service.tasks.WorkerSettings"]
    pipe = subprocess.PIPE
    worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=pipe, stderr=pipe, text=True)  # noqa: ASYNC220
    try:
        cursors = count(committed, select(func.count()).where(EventConsumer.name == NAME))
        await wait_until("started its consumer", cursors, worker)
        await deploy_failed(committed, world)
        notifications = count(committed, select(func.count()).select_from(Notification))
        await wait_until("delivered the event", notifications, worker)
        worker.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(worker.communicate, timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, stderr
    assert await notifications() == 2  # team-a's owner and maintainer
