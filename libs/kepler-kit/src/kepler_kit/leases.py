"""Leases: a loop that must run once per cluster, with several workers, runs only where its lease is held.

Postgres session-level advisory locks, all of a process's on one dedicated connection, rather than a Redis
lock with a TTL and a fencing token:
- The lock lives exactly as long as the holder's connection. A `kill -9`ed holder's socket closes, its
  backend exits and the server frees the lock at once: there is no TTL to wait out and no renewal to tune
  against stalls, so a contender (trying every `retry_seconds`) takes over within one try. A stalled holder
  (stopped, or its event loop blocked) keeps its socket and so its lease: it cannot be overtaken while alive.
- Postgres is already the truth, and the loops write there: the fence can be checked in the very transaction
  that writes. `Lease.fence(session)` takes the lease's fence lock shared and checks that the lease is still
  held by the holder's backend (pid and start time: the fencing token). A new holder takes the fence lock
  exclusively once before it starts, so it waits for any write of the old holder already past its check.
  A holder that lost its lease writes nothing more, and nothing at all after the new holder's first write.
- A holder notices a broken connection within `check_seconds` plus `timeout_seconds` (a ping) and stops its
  loop. A silent connection (a partition) is dropped by the server only after TCP keepalives give up
  (5 s idle, then 3 probes 2 s apart), after the holder itself has given up: the loops never overlap.
One connection holds every lease of a process: a worker watching 50 clusters uses one connection, not 50.
Holders and writers connect as the same role: pg_stat_activity hides other roles' backend start times.
"""

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from kepler_kit.logging import get_logger

log = get_logger(__name__)
APPLICATION_NAME = "kepler-lease "  # + the holder's identity, in pg_stat_activity
SETUP = """
SELECT pg_backend_pid(), (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()),
       set_config('application_name', :application_name, false),
       set_config('tcp_keepalives_idle', '5', false),
       set_config('tcp_keepalives_interval', '2', false),
       set_config('tcp_keepalives_count', '3', false)
"""
# pg_stat_activity is read once per transaction and then kept: a holder that connected since would be missed.
FRESH = "pg_stat_clear_snapshot()"
# The lease is the two-int advisory lock (objsubid 2 in pg_locks), the fence a one-bigint lock (objsubid 1).
HELD = """
SELECT a.pid, a.backend_start, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = :first AND l.objid = :second
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
PASS_FENCE = "SELECT CASE WHEN pg_try_advisory_lock(:fence) THEN pg_advisory_unlock(:fence) ELSE false END"  # noqa: S105  (SQL, not a password)
FENCE_POLL_SECONDS = 0.05  # a write of the previous holder in flight: it takes a round trip or two


@dataclass(frozen=True)
class Keys:
    """A lease's lock keys, derived from its name: the same name is the same lock in every process."""

    first: int
    second: int
    fence: int

    @classmethod
    def of(cls, name: str) -> "Keys":
        digest = hashlib.blake2b(name.encode(), digest_size=16).digest()
        # Non-negative int4s: pg_locks shows them as oids, which a negative key would not equal.
        first, second = (int.from_bytes(digest[i : i + 4], "big") >> 1 for i in (0, 4))
        return cls(first, second, int.from_bytes(digest[8:16], "big", signed=True))


@dataclass(eq=False)
class Lease:
    """One held lease. `lost` is set the moment this process stops holding it, however that happened."""

    name: str
    keys: Keys
    token: tuple[int, datetime]  # the holder's backend: pid and start time (a pid alone can be reused)
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def held(self) -> bool:
        return not self.lost.is_set()

    async def fence(self, session: AsyncSession) -> bool:
        """Call inside the transaction that writes on the lease's behalf; write only if True. Until that
        transaction ends, no new holder can start (see the module docstring)."""
        if not self.held:
            return False
        await session.execute(
            text(f"SELECT pg_advisory_xact_lock_shared(:fence), {FRESH}"), {"fence": self.keys.fence}
        )
        rows = await session.execute(text(HELD), {"first": self.keys.first, "second": self.keys.second})
        return any((pid, started) == self.token for pid, started, _ in rows) and self.held


async def holder(session: AsyncSession, name: str) -> str | None:
    """Who holds `name` (the `identity` its `Leases` was given), or None: for operators and tests."""
    keys = Keys.of(name)
    await session.execute(text(f"SELECT {FRESH}"))
    rows = (await session.execute(text(HELD), {"first": keys.first, "second": keys.second})).all()
    return rows[0][2].removeprefix(APPLICATION_NAME) if rows else None


class Leases:
    """A process's leases, on one connection of `engine` taken for the purpose (and closed, not pooled,
    when done: its session settings are its own)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        identity: str | None = None,
        retry_seconds: float = 2.0,
        check_seconds: float = 1.0,
        timeout_seconds: float = 2.0,
    ) -> None:
        self._engine, self.identity = engine, identity or f"{os.getpid()}@{socket.gethostname()}"
        self.retry_seconds, self.check_seconds, self.timeout_seconds = (
            retry_seconds,
            check_seconds,
            timeout_seconds,
        )
        self._conn: AsyncConnection | None = None
        self._token: tuple[int, datetime] | None = None
        self._held: dict[str, Lease] = {}
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False

    async def run_while_held(self, name: str, work: Callable[[Lease], Awaitable[None]]) -> NoReturn:
        """Runs `work` whenever this process holds `name`: cancelled as soon as the lease is lost, started
        again once it is won back. The lease is released however `work` ends."""
        while True:
            lease = await self.acquire(name)
            log.info("lease_acquired", lease=name, holder=self.identity)
            try:
                await _until_lost(lease, work(lease))
            finally:
                await self.release(lease)
            log.warning("lease_lost", lease=name, holder=self.identity)
            await asyncio.sleep(self.retry_seconds)

    async def acquire(self, name: str) -> Lease:
        """Waits for the lease, trying every `retry_seconds`; returns once the previous holder's writes
        are over (the fence)."""
        while True:
            lease = await self.try_acquire(name)
            if lease is not None and await self._past_fence(lease):
                return lease
            await asyncio.sleep(self.retry_seconds)

    async def _past_fence(self, lease: Lease) -> bool:
        """Waits out the previous holder's writes in flight; False if the lease was lost meanwhile."""
        while lease.held:
            if await self._scalar(PASS_FENCE, fence=lease.keys.fence):
                return True
            await asyncio.sleep(FENCE_POLL_SECONDS)
        return False

    async def try_acquire(self, name: str) -> Lease | None:
        """The lease if nobody holds it now, this process included; never waits for it."""
        if name in self._held:
            return None  # advisory locks are re-entrant per connection: a second loop here must not win
        keys = Keys.of(name)
        if not await self._scalar("SELECT pg_try_advisory_lock(:a, :b)", a=keys.first, b=keys.second):
            return None
        if name in self._held or self._token is None:  # another loop here won it meanwhile: undo ours
            await self._scalar("SELECT pg_advisory_unlock(:a, :b)", a=keys.first, b=keys.second)
            return None
        lease = self._held[name] = Lease(name, keys, self._token)
        return lease

    async def release(self, lease: Lease) -> None:
        """Lost first (a write fencing itself from now on fails), then unlocked."""
        lease.lost.set()
        if self._held.get(lease.name) is lease:
            del self._held[lease.name]
            await self._scalar("SELECT pg_advisory_unlock(:a, :b)", a=lease.keys.first, b=lease.keys.second)

    async def close(self) -> None:
        """Every lease lost, the connection closed: the server frees whatever is still locked.

        Bounded: on Python 3.11 `asyncio.wait_for` can swallow a cancellation that lands as its statement
        completes, so the watchdog also stops on `_closing`, and close waits for it no longer than a ping."""
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.wait({self._watchdog}, timeout=self.timeout_seconds + self.check_seconds)
        async with self._lock:
            await self._drop()

    async def _scalar(self, sql: str, **params: Any) -> Any:
        """The statement's value, or None when the connection failed (then every lease is lost)."""
        async with self._lock:
            try:
                conn = await self._connected()
                return await asyncio.wait_for(conn.scalar(text(sql), params), self.timeout_seconds)
            except Exception as exc:  # refused, reset, terminated or too slow: the same for the leases
                log.warning("lease_connection_failed", holder=self.identity, error=type(exc).__name__)
                await self._drop()
                return None

    async def _connected(self) -> AsyncConnection:
        if self._conn is None:
            conn = await (await self._engine.connect()).execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn  # dropped (closed) if the set-up fails
            row = (
                await conn.execute(text(SETUP), {"application_name": APPLICATION_NAME + self.identity})
            ).one()
            self._token = (row[0], row[1])
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch())
        return self._conn

    async def _watch(self) -> None:
        """A held lease's connection is pinged every `check_seconds`: a broken one ends its loops."""
        while not self._closing:
            await asyncio.sleep(self.check_seconds)
            if self._held and not self._closing:
                await self._scalar("SELECT 1")

    async def _drop(self) -> None:
        for lease in self._held.values():
            lease.lost.set()
        self._held.clear()
        conn, self._conn = self._conn, None
        if conn is not None:  # bounded: a connection the server already dropped must not hang us
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.invalidate(), self.timeout_seconds)  # closed, not pooled
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.timeout_seconds)


async def _until_lost(lease: Lease, work: Awaitable[None]) -> None:
    """Runs `work` until it ends or `lease` is lost; `work`'s own error propagates."""
    task, lost = asyncio.ensure_future(work), asyncio.create_task(lease.lost.wait())
    try:
        await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for each in (lost, task):
            each.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await each
