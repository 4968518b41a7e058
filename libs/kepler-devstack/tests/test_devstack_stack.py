"""`python -m kepler_devstack`: the process table, configuration and the commands end to end."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from kepler_devstack import procfs
from kepler_devstack.components import COMPONENTS, kepler_processes, sandbox_cluster
from kepler_devstack.config import StackConfig
from kepler_devstack.embedded import port_is_free, redis_ping, start_postgres, stop_running_postgres
from kepler_devstack.stack import (
    DevstackError,
    check_ports_free,
    child_env,
    http_status,
    lock_data_dir,
    wait_for_free_ports,
)
from kepler_devstack.supervisor import Shutdown
from kepler_kit.contracts import service_queue
from kepler_kit.settings import KeplerSettings


class TestProcessTable:
    def test_services_listen_on_consecutive_ports_and_workers_run_arq(self) -> None:
        """And uvicorn ignores X-Forwarded-For (it would believe loopback peers): the kit's trusted-proxy
        rule decides, so a client on this machine cannot forge its address under `make run`."""
        by_name = {spec.name: spec for spec in kepler_processes(9000)}
        assert by_name["gateway"].argv[1:] == (
            "-m", "uvicorn", "kepler_gateway.app:create_app", "--factory", "--host", "127.0.0.1",
            "--port", "9000", "--no-access-log", "--log-level", "warning", "--no-proxy-headers",
        )  # fmt: skip
        terminal = by_name["terminal-service"].argv
        assert terminal[terminal.index("--port") + 1] == "9004"
        assert by_name["workers"].argv[1:] == (
            "-m",
            "kepler_devstack.workers",
            "kepler_app_service.tasks.WorkerSettings",
            "kepler_build_service.tasks.WorkerSettings",
            "kepler_alert_service.tasks.WorkerSettings",
            "kepler_terminal_service.tasks.WorkerSettings",
        )
        assert len(by_name) == 6

    def test_the_gateway_is_told_where_each_service_is(self) -> None:
        gateway = next(spec for spec in kepler_processes(9000) if spec.name == "gateway")
        assert gateway.env == {
            "KEPLER_GATEWAY_APP_SERVICE_URL": "http://127.0.0.1:9001",
            "KEPLER_GATEWAY_BUILD_SERVICE_URL": "http://127.0.0.1:9002",
            "KEPLER_GATEWAY_ALERT_SERVICE_URL": "http://127.0.0.1:9003",
            "KEPLER_GATEWAY_TERMINAL_SERVICE_URL": "http://127.0.0.1:9004",
        }


class TestSandbox:
    def test_the_simulated_cluster_keeps_its_objects_under_the_data_dir(self, tmp_path: Path) -> None:
        """A restarted sandbox came back empty while Kepler still showed the apps as rolled out."""
        config = StackConfig.from_env({"KEPLER_DATA_DIR": str(tmp_path), "KEPLER_SANDBOX": "1"}, cwd=tmp_path)
        argv = sandbox_cluster(config.sandbox_port, config.sandbox_state_file).argv
        assert argv[argv.index("--state-file") + 1] == str(tmp_path / "sandbox" / "cluster.json")


class TestReadiness:
    def test_every_service_waits_for_every_workers_heartbeat(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`make run` announced "ready" (the gateway's /readyz) before the workers had started, so the
        first deploy waited in Redis; now each /readyz, the gateway's included, requires every worker."""
        monkeypatch.delenv("KEPLER_READINESS_WORKER_QUEUES", raising=False)
        env = child_env({"KEPLER_DATABASE_URL": "postgresql+asyncpg://db/x", "KEPLER_REDIS_URL": "redis://r"})
        monkeypatch.setenv("KEPLER_READINESS_WORKER_QUEUES", env["KEPLER_READINESS_WORKER_QUEUES"])
        settings = KeplerSettings()
        workers = [c.name for c in COMPONENTS if c.worker]
        assert settings.readiness_worker_queues == [service_queue(name) for name in workers]
        assert len(workers) == 4


class TestConfig:
    def test_defaults_to_dot_kepler_in_the_workspace_root(self, tmp_path: Path) -> None:
        (tmp_path / "uv.lock").touch()
        (tmp_path / "services" / "x").mkdir(parents=True)
        config = StackConfig.from_env({}, cwd=tmp_path / "services" / "x")
        assert (config.root, config.data_dir, config.gateway_port) == (tmp_path, tmp_path / ".kepler", 8000)
        assert config.database_url is None
        assert config.redis_url is None

    def test_environment_overrides(self, tmp_path: Path) -> None:
        database_url, redis_url = "postgresql+asyncpg://db/kepler", "redis://r:6379/0"
        env = {"KEPLER_DATA_DIR": str(tmp_path / "d"), "KEPLER_GATEWAY_PORT": "18000",
               "KEPLER_DATABASE_URL": database_url, "KEPLER_REDIS_URL": redis_url}  # fmt: skip
        config = StackConfig.from_env(env, cwd=tmp_path)
        assert (config.data_dir, config.gateway_port) == (tmp_path / "d", 18000)
        assert (config.database_url, config.redis_url) == (database_url, redis_url)


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class TestStartupChecks:
    def test_a_busy_service_port_is_refused_with_a_hint(self, listening_port: int) -> None:
        with pytest.raises(DevstackError, match=rf"{listening_port} \(gateway\).*KEPLER_GATEWAY_PORT"):
            check_ports_free(listening_port)

    async def test_a_port_held_by_a_connection_is_waited_for_not_refused(self) -> None:
        """`make run` refused "ports in use: 38002" with nothing listening there: the port was the local
        end of a connection (ports from 32768 up are also ephemeral ports). It is free once that
        connection is gone, so the devstack waits instead of refusing."""
        with socket.socket() as listener, socket.socket() as client:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            gateway = _bind_inside_a_free_block(client, offset=2)
            client.connect(listener.getsockname())
            server_side, _ = listener.accept()
            waiting = asyncio.create_task(wait_for_free_ports(gateway, Shutdown(), within_s=60))
            await asyncio.sleep(0)  # its first look: the port cannot be bound
            assert not waiting.done()
            server_side.close()  # the server closes first: the client's port does not linger in TIME_WAIT
            client.close()
        await asyncio.wait_for(waiting, 30)

    def test_one_devstack_per_data_dir(self, tmp_path: Path) -> None:
        with lock_data_dir(tmp_path), pytest.raises(DevstackError, match="another devstack"):
            lock_data_dir(tmp_path).__enter__()


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    """Answers /readyz with 200 and anything else with 503, like a gateway still warming up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = await reader.readline()
        status = "200 OK" if b" /readyz " in request_line else "503 Service Unavailable"
        writer.write(f"HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n".encode())
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


class TestHttpStatus:
    async def test_reads_the_status_code(self, http_server: int) -> None:
        assert await http_status("127.0.0.1", http_server, "/readyz") == 200
        assert await http_status("127.0.0.1", http_server, "/other") == 503

    async def test_nothing_listening_is_none(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        assert await http_status("127.0.0.1", port, "/readyz") is None


def _devstack(command: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    """The CLI as `make run` starts it, confined to a temporary data dir and free ports."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("KEPLER_DATABASE_URL", "KEPLER_REDIS_URL")}
    child_env |= {"KEPLER_DATA_DIR": str(tmp_path / "data"), **env}
    argv = [sys.executable, "-m", "kepler_devstack", command]
    return subprocess.Popen(argv, cwd=tmp_path, env=child_env, stdout=subprocess.PIPE, text=True)


def _read_exports(devstack: subprocess.Popen[str]) -> dict[str, str]:
    assert devstack.stdout is not None
    return dict(shlex.split(devstack.stdout.readline())[1].split("=", 1) for _ in range(2))


def _bind_inside_a_free_block(sock: socket.socket, offset: int) -> int:
    """Binds `sock` to the port `offset` into a free block and returns the block's first port. Another
    process (or a connection of an earlier test, in TIME_WAIT) may hold a port the check found free: then
    another block."""
    for _ in range(20):
        first = free_port_block()
        try:
            sock.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        return first
    raise AssertionError("no block of free ports")


def free_port_block(size: int = 5) -> int:
    """First port of `size` consecutive free ports, as the services need."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            first = int(sock.getsockname()[1])
        if first + size < 65536 and all(port_is_free(first + i) for i in range(size)):
            return first
    raise AssertionError("no block of free ports")


def test_run_stops_before_any_service_when_migrations_fail(tmp_path: Path) -> None:
    """No alembic.ini in the (temporary) root: alembic fails, nothing starts, embedded servers stop."""
    devstack = _devstack("run", tmp_path, KEPLER_GATEWAY_PORT=str(free_port_block()))
    output, _ = devstack.communicate(timeout=60)
    assert devstack.returncode == 1, output
    assert "migrate          | " in output
    assert "migrations failed; not starting services" in output
    assert "gateway          |" not in output
    assert output.rstrip().endswith("PostgreSQL stopped")


STANDIN_ALEMBIC_ENV = """
import asyncio, os
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

async def main():
    engine = create_async_engine(os.environ["KEPLER_DATABASE_URL"])
    async with engine.begin() as connection:
        await connection.execute(text("create table if not exists migrated (id int)"))
    await engine.dispose()
    print("migrated", os.environ["KEPLER_DATABASE_URL"], flush=True)

asyncio.run(main())
"""


def _write_standin_alembic_project(root: Path) -> None:
    (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(STANDIN_ALEMBIC_ENV)


@pytest.fixture
def embedded_devstack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """`python -m kepler_devstack embedded` running on tmp_path, and the URLs it exported."""
    running = _devstack("embedded", tmp_path)
    try:
        yield running, _read_exports(running)
    finally:
        if running.poll() is None:
            running.send_signal(signal.SIGTERM)
            running.wait(20)
        assert running.stdout is not None
        running.stdout.close()


def test_embedded_servers_serve_make_migrate_and_stop_on_sigterm(
    tmp_path: Path, embedded_devstack: tuple[subprocess.Popen[str], dict[str, str]]
) -> None:
    """`embedded` (or `run`) holds the data dir; `make migrate` next to it migrates that same PostgreSQL,
    from the repo root, and leaves it running; SIGTERM then stops both servers."""
    running, exports = embedded_devstack
    _write_standin_alembic_project(tmp_path)
    postmaster = int((tmp_path / "data" / "postgres" / "postmaster.pid").read_text().split()[0])
    assert exports["KEPLER_DATABASE_URL"].endswith(f"?host={tmp_path / 'data' / 'postgres'}")
    assert redis_ping(int(exports["KEPLER_REDIS_URL"].rsplit(":", 1)[1].split("/")[0]))

    output, _ = _devstack("migrate", tmp_path).communicate(timeout=60)
    assert f"migrate          | migrated {exports['KEPLER_DATABASE_URL']}" in output
    assert procfs.pid_alive(postmaster)

    running.send_signal(signal.SIGTERM)
    assert running.wait(20) == 0
    assert not procfs.pid_alive(postmaster)
    assert not (tmp_path / "data" / "redis" / "redis.pid").exists()


def _pid_in(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _text_of(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _wait_for_a_new_server(pidfile: Path, old: int, name: str) -> int:
    """The server the devstack started in place of `old`, once it wrote its pid file."""
    deadline = time.monotonic() + 60
    while (pid := _pid_in(pidfile)) in (None, old) or procfs.process_name(pid) != name:
        assert time.monotonic() < deadline, f"{name} was not restarted"
        time.sleep(0.1)
    assert pid is not None
    return pid


async def _select_one(database_url: str) -> object:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(text("select 1"))
    finally:
        await engine.dispose()


def test_killed_embedded_servers_are_restarted_and_stopped_with_the_devstack(
    tmp_path: Path, embedded_devstack: tuple[subprocess.Popen[str], dict[str, str]]
) -> None:
    """The services were restarted when they died, PostgreSQL and Redis were not; and a Ctrl-C after a
    restart left the new instances running. Killed here, they come back on the URLs the services hold,
    and SIGTERM stops the instances that replaced them."""
    running, exports = embedded_devstack
    postgres, redis = tmp_path / "data" / "postgres", tmp_path / "data" / "redis"
    first_postmaster, first_redis = _pid_in(postgres / "postmaster.pid"), _pid_in(redis / "redis.pid")
    assert first_postmaster is not None
    assert first_redis is not None
    os.kill(first_postmaster, signal.SIGKILL)
    os.kill(first_redis, signal.SIGKILL)

    _wait_for_a_new_server(postgres / "postmaster.pid", first_postmaster, "postgres")
    deadline = time.monotonic() + 60
    # A restart may fail once on a loaded machine (the devstack then retries with backoff, and the pid file
    # goes away meanwhile): wait for whichever instance ends up accepting connections.
    while "ready" not in _text_of(postgres / "postmaster.pid"):
        assert time.monotonic() < deadline, "PostgreSQL did not get ready"
        time.sleep(0.1)
    postmaster = _wait_for_a_new_server(postgres / "postmaster.pid", first_postmaster, "postgres")
    redis_server = _wait_for_a_new_server(redis / "redis.pid", first_redis, "redis-server")
    assert asyncio.run(_select_one(exports["KEPLER_DATABASE_URL"])) == 1
    redis_port = int(exports["KEPLER_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    deadline = time.monotonic() + 30
    while not redis_ping(redis_port):
        assert time.monotonic() < deadline, "Redis did not come back on its port"
        time.sleep(0.1)

    running.send_signal(signal.SIGTERM)
    assert running.wait(30) == 0
    assert not procfs.pid_alive(postmaster)
    assert not procfs.pid_alive(redis_server)


def test_stopping_postgres_by_its_data_dir_stops_a_server_started_by_someone_else(tmp_path: Path) -> None:
    """After a crash, `make migrate` (or a developer) may start PostgreSQL on the data dir; the devstack's
    stop must not leave that one running because it is not the instance the devstack started."""
    pg = start_postgres(tmp_path / "postgres")
    stop_running_postgres(tmp_path / "postgres")
    assert not procfs.pid_alive(pg.pid)


def test_stopping_postgres_by_its_data_dir_spares_a_recycled_pid(tmp_path: Path) -> None:
    """After a crash the pid file is stale; its pid may by now be another PostgreSQL's (six stacks on one
    machine): only the postmaster running in this data dir is stopped."""
    other = start_postgres(tmp_path / "other")
    try:
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "postmaster.pid").write_text(f"{other.pid}\n{tmp_path / 'mine'}\n")
        stop_running_postgres(tmp_path / "mine")
        assert procfs.pid_alive(other.pid)
    finally:
        other.stop()
