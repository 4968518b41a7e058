"""The embedded PostgreSQL and Redis kept running like the services: restarted with backoff when they die,
and at the end whichever instance runs on their data dir is stopped, also one a restart (or a developer
running `make migrate` after a crash) started."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from kepler_devstack.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    start_postgres_async,
    start_redis_async,
    stop_running_postgres,
    stop_running_redis,
)
from kepler_devstack.logfmt import fields, log
from kepler_devstack.supervisor import RestartPolicy, first_of

CHECK_EVERY_S = 0.5  # neither server is a child asyncio can wait on (pg_ctl daemonizes the postmaster)


class Server(Protocol):
    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...


S = TypeVar("S", bound=Server)


class Kept(Generic[S]):
    """One embedded server under watch. `restart` must bring it back on the same URL: the services keep
    the one they were given and reconnect to it."""

    def __init__(
        self,
        name: str,
        server: S,
        restart: Callable[[], Awaitable[S]],
        stop_all: Callable[[], None],
        policy: RestartPolicy | None = None,
    ) -> None:
        self.name, self.server = name, server
        self._restart, self._stop_all = restart, stop_all
        self._policy = policy or RestartPolicy()
        self._stopping = asyncio.Event()
        self._watch = asyncio.create_task(self._keep_running())

    async def _keep_running(self) -> None:
        delay: float | None = None
        while not self._stopping.is_set():
            up_since = time.monotonic()
            while self.server.alive() and not self._stopping.is_set():
                await first_of(self._stopping.wait(), at_most_s=CHECK_EVERY_S)
            if self._stopping.is_set():
                return
            delay = self._policy.next_delay(delay, time.monotonic() - up_since)
            log.warning(
                "process died; restarting with backoff",
                extra=fields(proc=self.name, restart_in=f"{delay:g}s"),
            )
            await first_of(self._stopping.wait(), at_most_s=delay)
            if not self._stopping.is_set():
                await self._start_again()

    async def _start_again(self) -> None:
        """Never cancelled halfway (`stop` waits for it): a server started in a thread that nobody then
        records would be the orphan this class exists to prevent."""
        try:
            self.server = await self._restart()
        except Exception as exc:  # tried again after the next backoff, however it failed
            log.error("restart failed", extra=fields(proc=self.name, error=f"{exc}".split("\n")[0]))
            return
        log.info(f"{self.name} restarted", extra=fields(pid=self.server.pid))

    async def stop(self) -> None:
        self._stopping.set()
        await self._watch
        await asyncio.to_thread(self._stop_all)
        log.info(f"{self.name} stopped")


def keep_postgres(pg: EmbeddedPostgres, policy: RestartPolicy | None = None) -> Kept[EmbeddedPostgres]:
    return Kept(
        "PostgreSQL",
        pg,
        lambda: start_postgres_async(pg.data_dir),
        lambda: stop_running_postgres(pg.data_dir),
        policy,
    )


def keep_redis(redis: EmbeddedRedis, policy: RestartPolicy | None = None) -> Kept[EmbeddedRedis]:
    kept: Kept[EmbeddedRedis]

    def stop_all() -> None:
        kept.server.stop()  # our child: stopped and reaped
        stop_running_redis(redis.data_dir)  # one started by anyone else on this directory

    kept = Kept("Redis", redis, lambda: start_redis_async(redis.data_dir, port=redis.port), stop_all, policy)
    return kept
