"""`python -m kepler_devstack run`: backing servers, then migrations, then the supervised services.

Shutdown runs in reverse: services and workers first (they hold connections), then Redis, then
PostgreSQL. The supervisor imports neither FastAPI nor SQLAlchemy: its memory counts in the footprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shlex
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from kepler_devstack import components, state
from kepler_devstack.config import StackConfig
from kepler_devstack.embedded import port_is_free, port_is_listening, start_postgres_async, start_redis_async
from kepler_devstack.keeper import keep_postgres, keep_redis
from kepler_devstack.logfmt import fields, log
from kepler_devstack.supervisor import ProcessSpec, Shutdown, Supervisor, first_of

READY_PATH = "/readyz"
SLOW_START_S = 60.0
PROBE_TIMEOUT_S = 2.0
WORKERS_AT_LATEST_S = 30.0
PORT_WAIT_S = 65.0  # Linux keeps a closed connection's port in TIME_WAIT for 60 s


class DevstackError(RuntimeError):
    """A startup problem the user can fix (busy port, second devstack on the same data dir)."""


def name_width() -> int:
    """Pad every prefix to the longest process name so the `|` column lines up."""
    names = [spec.name for spec in components.kepler_processes(0)]
    return max(len(name) for name in [*names, "devstack", "migrate", "kubefake", "sandbox"])


@contextlib.contextmanager
def lock_data_dir(data_dir: Path) -> Iterator[None]:
    """Two devstacks on one data dir would share (and then stop) each other's PostgreSQL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "devstack.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DevstackError(f"another devstack is running on {data_dir}; set KEPLER_DATA_DIR") from None
    try:
        yield
    finally:
        os.close(fd)


def check_ports_free(gateway_port: int) -> list[str]:
    """Fail fast with a hint when a server listens on a service port, rather than let five services
    crash-loop on "address in use". Returns the ports that cannot be bound yet although nothing listens:
    the local end of a connection, e.g. one that just closed and sits in TIME_WAIT for a minute (ports
    from 32768 up are also the kernel's ephemeral ports, which every outgoing connection uses)."""
    busy = {
        port: name for name, port in components.service_ports(gateway_port).items() if not port_is_free(port)
    }
    listening = [f"{port} ({name})" for port, name in busy.items() if port_is_listening(port)]
    if listening:
        hint = "stop what holds them or set KEPLER_GATEWAY_PORT"
        raise DevstackError(f"ports in use: {', '.join(listening)}; {hint}")
    return [f"{port} ({name})" for port, name in busy.items()]


async def wait_for_free_ports(gateway_port: int, shutdown: Shutdown, within_s: float = PORT_WAIT_S) -> None:
    """`make run` once refused "ports in use: 38002" while nothing listened there: a port held by a closing
    connection is free within a minute, so wait for it (saying so) instead of refusing to start."""
    deadline, announced = time.monotonic() + within_s, False
    while held := check_ports_free(gateway_port):
        if time.monotonic() >= deadline or shutdown.requested.is_set():
            raise DevstackError(
                f"ports still held by closed connections: {', '.join(held)}; set KEPLER_GATEWAY_PORT"
            )
        if not announced:
            log.info("waiting for ports held by closing connections", extra=fields(ports=", ".join(held)))
            announced = True
        await first_of(shutdown.requested.wait(), at_most_s=0.25)


async def _database_url(config: StackConfig, stack: contextlib.AsyncExitStack) -> str:
    if config.database_url:
        log.info("using PostgreSQL from KEPLER_DATABASE_URL")
        return config.database_url
    pg = await start_postgres_async(config.data_dir / "postgres")
    stack.push_async_callback(keep_postgres(pg).stop)
    log.info("embedded PostgreSQL ready", extra=fields(pid=pg.pid, url=pg.url))
    return pg.url


async def _redis_url(config: StackConfig, stack: contextlib.AsyncExitStack) -> str:
    if config.redis_url:
        log.info("using Redis from KEPLER_REDIS_URL")
        return config.redis_url
    redis = await start_redis_async(config.data_dir / "redis")
    stack.push_async_callback(keep_redis(redis).stop)
    log.info("embedded Redis ready", extra=fields(pid=redis.pid, url=redis.url))
    return redis.url


@contextlib.asynccontextmanager
async def backing_servers(config: StackConfig) -> AsyncIterator[dict[str, str]]:
    """Yield the two URLs children need; embedded servers started here are stopped on exit, Redis first.

    Started one after the other: a failure then never leaves the other half-started in a thread.
    """
    async with contextlib.AsyncExitStack() as stack:
        if not (config.database_url and config.redis_url):
            stack.enter_context(lock_data_dir(config.data_dir))
        database_url = await _database_url(config, stack)
        redis_url = await _redis_url(config, stack)
        urls = {"KEPLER_DATABASE_URL": database_url, "KEPLER_REDIS_URL": redis_url}
        stack.enter_context(state.recorded(config.data_dir, urls))
        yield urls


def child_env(urls: dict[str, str]) -> dict[str, str]:
    """Unbuffered so child output reaches the terminal as it happens, not when a 8 KiB buffer fills.
    Readable text unless KEPLER_LOG_JSON asks for JSON: the services' own default is JSON."""
    log_json = os.environ.get("KEPLER_LOG_JSON") or "false"
    return {
        **components.readiness_env(),
        **os.environ,
        **urls,
        "PYTHONUNBUFFERED": "1",
        "KEPLER_LOG_JSON": log_json,
    }


async def migrate(config: StackConfig, env: dict[str, str], shutdown: Shutdown, out: TextIO) -> bool:
    """`alembic upgrade head` from the repo root, before any service touches the schema."""
    spec = ProcessSpec("migrate", (sys.executable, "-m", "alembic", "upgrade", "head"))
    runner = Supervisor([spec], env, shutdown, out=out, width=name_width(), cwd=config.root)
    started = time.monotonic()
    code = await runner.run_once(spec)
    if code == 0:
        log.info(f"database schema up to date ({time.monotonic() - started:.1f}s)")
    elif not shutdown.requested.is_set():
        log.error("migrations failed; not starting services", extra=fields(exit=code, cwd=config.root))
    return code == 0


async def http_status(host: str, port: int, path: str) -> int | None:
    """A bare HTTP/1.1 GET: httpx would cost the supervisor ~10 MB for one status line."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                status_line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return None
    parts = status_line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def announce_when_ready(port: int, shutdown: Shutdown, started: float) -> None:
    """Poll the gateway's readiness briefly at startup and tell the user where Kepler is."""
    url, slow_warned = f"http://{components.HOST}:{port}", False
    while not shutdown.requested.is_set():
        if await http_status(components.HOST, port, READY_PATH) == 200:
            log.info(f"Kepler is ready in {time.monotonic() - started:.1f}s")
            log.info(f"  gateway   {url}")
            log.info(f"  API docs  {url}/docs")
            return
        if not slow_warned and time.monotonic() - started > SLOW_START_S:
            log.warning("gateway still not ready; see its output above", extra=fields(url=url + READY_PATH))
            slow_warned = True
        await first_of(shutdown.requested.wait(), at_most_s=0.25)


async def services_up(gateway_port: int, shutdown: Shutdown) -> None:
    """Until every service answers `/healthz` (it has imported and serves), or shutdown."""
    ports = list(components.service_ports(gateway_port).values())
    while not shutdown.requested.is_set():
        statuses = await asyncio.gather(*(http_status(components.HOST, port, "/healthz") for port in ports))
        if all(status == 200 for status in statuses):
            return
        await first_of(shutdown.requested.wait(), at_most_s=0.25)


async def start_workers(workers: Supervisor, gateway_port: int, shutdown: Shutdown) -> None:
    """Workers start once every service is up, or after WORKERS_AT_LATEST_S if one never gets there.

    Nine processes importing at once on a two-core laptop slow each other down; giving the API the CPU
    first gets `make run` usable seconds sooner, and a job enqueued meanwhile just waits in Redis. Not
    "once the gateway is ready": readiness includes the workers' heartbeat.
    """
    await first_of(services_up(gateway_port, shutdown), at_most_s=WORKERS_AT_LATEST_S)
    if not shutdown.requested.is_set():
        log.info("starting workers")
        await workers.run()


async def serve(
    config: StackConfig, env: dict[str, str], shutdown: Shutdown, out: TextIO, started: float
) -> None:
    def supervisor(specs: list[ProcessSpec]) -> Supervisor:
        return Supervisor(specs, env, shutdown, out=out, width=name_width(), cwd=config.root)

    async with asyncio.TaskGroup() as group:
        if config.sandbox:
            group.create_task(
                supervisor([components.sandbox_cluster(config.sandbox_port, config.sandbox_state_file)]).run()
            )
        group.create_task(supervisor(components.kepler_services(config.gateway_port)).run())
        group.create_task(announce_when_ready(config.gateway_port, shutdown, started))
        workers = supervisor(components.kepler_workers())
        group.create_task(start_workers(workers, config.gateway_port, shutdown))
    log.info("all processes stopped")


async def enter_sandbox(
    config: StackConfig, env: dict[str, str], shutdown: Shutdown, out: TextIO
) -> dict[str, str]:
    """Registers the simulated cluster and makes it every namespace's default; says so loudly."""
    spec = components.sandbox_registration(config.sandbox_port)
    runner = Supervisor([spec], env, shutdown, out=out, width=name_width(), cwd=config.root)
    if await runner.run_once(spec) != 0:
        log.error("could not register the sandbox cluster")
    log.warning("SANDBOX: Kubernetes is SIMULATED by a contract fake; nothing you deploy really runs")
    return {**env, **components.SANDBOX_ENV}


async def run_stack(config: StackConfig, out: TextIO) -> int:
    """The whole of `make run`; returns the process exit code."""
    started, shutdown = time.monotonic(), Shutdown()
    shutdown.install_signal_handlers()
    await wait_for_free_ports(config.gateway_port, shutdown)
    async with backing_servers(config) as urls:
        env = child_env(urls)
        if shutdown.requested.is_set() or not await migrate(config, env, shutdown, out):
            return 0 if shutdown.requested.is_set() else 1
        if config.sandbox:
            env = await enter_sandbox(config, env, shutdown, out)
        await serve(config, env, shutdown, out, started)
    return 0


async def _database_for_migrate(config: StackConfig, stack: contextlib.AsyncExitStack) -> str:
    """The running devstack's PostgreSQL if there is one (adopted and left running: a developer adding a
    migration keeps `make run` up), else one started for the occasion and stopped afterwards."""
    try:
        stack.enter_context(lock_data_dir(config.data_dir))
    except DevstackError:
        log.info("a devstack is running on this data dir; migrating its PostgreSQL")
        return (await start_postgres_async(config.data_dir / "postgres")).url
    return await _database_url(config, stack)


async def run_migrate(config: StackConfig, out: TextIO) -> int:
    """`make migrate`: `alembic upgrade head` on KEPLER_DATABASE_URL, else on the embedded PostgreSQL."""
    shutdown = Shutdown()
    shutdown.install_signal_handlers()
    async with contextlib.AsyncExitStack() as stack:
        url = config.database_url or await _database_for_migrate(config, stack)
        migrated = await migrate(config, child_env({"KEPLER_DATABASE_URL": url}), shutdown, out)
    return 0 if migrated else 1


async def run_embedded(config: StackConfig, out: TextIO) -> int:
    """Only the embedded servers, for running services by hand: prints `export` lines, waits for Ctrl-C."""
    shutdown = Shutdown()
    shutdown.install_signal_handlers()
    async with backing_servers(replace(config, database_url=None, redis_url=None)) as urls:
        out.write("".join(f"export {key}={shlex.quote(value)}\n" for key, value in urls.items()))
        out.flush()
        log.info("embedded servers running; Ctrl-C stops them")
        await shutdown.requested.wait()
    return 0
