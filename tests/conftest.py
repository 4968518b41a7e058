"""Fixtures of the end-to-end tests that run real worker processes against a database of their own."""

import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kepler_kit.testing.database import TestDatabase, create_test_database, drop_test_database

ROOT = Path(__file__).resolve().parent.parent
Spawn = Callable[[dict[str, str], Path], subprocess.Popen[bytes]]


@pytest.fixture
def scratch(test_database: TestDatabase) -> Iterator[TestDatabase]:
    """A migrated database the worker processes share with the test (committed data, no rolled-back
    test transaction)."""
    database = create_test_database(test_database.server_url, f"kepler_e2e_{secrets.token_hex(4)}")
    yield database
    drop_test_database(database)


@pytest.fixture
async def scratch_engine(scratch: TestDatabase) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(scratch.url)
    yield engine
    await engine.dispose()


@pytest.fixture
def app_worker() -> Iterator[Spawn]:
    """Starts app-service worker processes (`env`, output appended to `log`); any still running at the
    end of the test is stopped as Kubernetes would: SIGTERM, then SIGKILL if it does not exit."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "kepler_kit.worker", "kepler_app_service.tasks.WorkerSettings"]
        with log.open("ab") as sink:
            started.append(
                subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=sink, stderr=sink)
            )
        return started[-1]

    yield spawn
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
