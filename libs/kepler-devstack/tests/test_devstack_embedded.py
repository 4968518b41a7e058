"""Embedded PostgreSQL and Redis: what `make run` and the test plugin rely on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from kepler_devstack import procfs
from kepler_devstack.embedded import (
    PREFERRED_REDIS_PORT,
    EmbeddedPostgres,
    EmbeddedRedis,
    port_is_free,
    redis_ping,
    start_postgres_async,
    start_redis,
)


async def _redis_get(server: EmbeddedRedis, key: str) -> bytes | None:
    client = aioredis.Redis(port=server.port)
    try:
        value: bytes | None = await client.get(key)
    finally:
        await client.aclose()
    return value


async def _redis_set(server: EmbeddedRedis, key: str, value: str) -> None:
    client = aioredis.Redis(port=server.port)
    try:
        await client.set(key, value)
    finally:
        await client.aclose()


class TestEmbeddedRedis:
    async def test_queued_data_survives_a_restart_when_persistent(self, tmp_path: Path) -> None:
        with start_redis(tmp_path / "redis", port=None) as first:
            await _redis_set(first, "arq:queue", "job-1")
        with start_redis(tmp_path / "redis") as second:
            assert await _redis_get(second, "arq:queue") == b"job-1"

    async def test_nothing_survives_without_persistence(self, tmp_path: Path) -> None:
        with start_redis(tmp_path / "redis", persist=False) as first:
            await _redis_set(first, "k", "v")
        with start_redis(tmp_path / "redis", persist=False) as second:
            assert await _redis_get(second, "k") is None

    def test_stop_frees_the_port(self, tmp_path: Path) -> None:
        server = start_redis(tmp_path / "redis", persist=False)
        server.stop()
        assert server.process.returncode == 0
        assert not redis_ping(server.port)

    def test_a_second_server_takes_another_port(self, tmp_path: Path) -> None:
        with start_redis(tmp_path / "a", persist=False) as a, start_redis(tmp_path / "b", persist=False) as b:
            assert a.port != b.port
            assert PREFERRED_REDIS_PORT in (a.port, b.port) or not port_is_free(PREFERRED_REDIS_PORT)
            assert redis_ping(a.port)
            assert redis_ping(b.port)

    def test_orphan_from_a_crashed_run_is_replaced(self, tmp_path: Path) -> None:
        orphan = start_redis(tmp_path / "redis", persist=False)
        try:
            with start_redis(tmp_path / "redis", persist=False) as fresh:
                assert orphan.process.wait(5) == 0  # stopped gracefully, not left appending to the AOF
                assert redis_ping(fresh.port)
        finally:
            orphan.stop()


async def _server_version(pg: EmbeddedPostgres) -> str:
    """Connects through `pg.url`, exactly as the services will."""
    engine = create_async_engine(pg.url)
    try:
        async with engine.connect() as connection:
            version = await connection.scalar(text("show server_version"))
    finally:
        await engine.dispose()
    return str(version)


@pytest.fixture
def stranger() -> Iterator[int]:
    """An unrelated live process, standing in for a recycled pid."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


async def _execute(pg: EmbeddedPostgres, *statements: str) -> object:
    """Run statements in one committed transaction; the last one's scalar result."""
    engine = create_async_engine(pg.url)
    try:
        async with engine.begin() as connection:
            results = [await connection.execute(text(statement)) for statement in statements]
            return results[-1].scalar() if results[-1].returns_rows else None
    finally:
        await engine.dispose()


class TestEmbeddedPostgres:
    async def test_starts_accepts_connections_and_stops(self, tmp_path: Path) -> None:
        pg = await start_postgres_async(tmp_path / "postgres")
        try:
            assert pg.url == f"postgresql+asyncpg://postgres@/postgres?host={tmp_path / 'postgres'}"
            assert (await _server_version(pg)).startswith("16")
            running_as = (Path("/proc") / str(pg.pid)).stat().st_uid
            assert running_as != 0 or os.geteuid() != 0  # as root, pgserver uses a user of its own
        finally:
            pg.stop()
        assert not procfs.pid_alive(pg.pid)
        assert not (tmp_path / "postgres" / "postmaster.pid").exists()

    async def test_a_restart_adopts_a_running_server_survives_a_recycled_pid_and_keeps_data(
        self, tmp_path: Path, stranger: int
    ) -> None:
        """The crash-then-reboot path: the server outlived its supervisor, then its pid went to a stranger."""
        first = await start_postgres_async(tmp_path / "postgres")
        await _execute(first, "create table kept (note text)", "insert into kept values ('still here')")
        assert (await start_postgres_async(tmp_path / "postgres")).pid == first.pid
        pidfile = tmp_path / "postgres" / "postmaster.pid"
        stale = pidfile.read_text().replace(str(first.pid), str(stranger), 1)
        await asyncio.to_thread(first.stop)
        pidfile.write_text(stale)
        restarted = await start_postgres_async(tmp_path / "postgres")
        try:
            assert procfs.process_name(restarted.pid) == "postgres"
            assert await _execute(restarted, "select note from kept") == "still here"
        finally:
            await asyncio.to_thread(restarted.stop)
        assert procfs.pid_alive(stranger)

    def test_stop_never_signals_a_pid_that_is_no_longer_the_postmaster(
        self, tmp_path: Path, stranger: int
    ) -> None:
        EmbeddedPostgres(tmp_path, tmp_path, stranger).stop(step_timeout=0.1)
        assert procfs.pid_alive(stranger)
