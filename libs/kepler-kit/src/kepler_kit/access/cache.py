"""The live access data behind every check — users, memberships, sessions and API tokens — read from
Postgres, cached for a few seconds, and evicted at once when another process publishes a change on Redis."""

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import ApiToken, AuthSession, Membership, Namespace, Role, User
from kepler_kit.logging import get_logger

log = get_logger(__name__)
CHANNEL = "kepler:access"
T = TypeVar("T")


@dataclass(frozen=True)
class UserState:
    id: uuid.UUID
    email: str
    active: bool
    is_admin: bool


class NamespaceAccess(NamedTuple):
    exists: bool
    role: Role | None = None
    allow_exec: bool = False
    fresh_until: float = float("inf")  # monotonic; what is read from the database is trusted for the TTL


class SingleFlight:
    """Concurrent loads of one key share a single load. When a cached entry expires under load, one
    request reads the database (or verifies the token) and the others await its answer, instead of
    every request in flight doing the same work at once."""

    def __init__(self) -> None:
        self._running: dict[Any, asyncio.Future[Any]] = {}

    async def run(self, key: Any, load: Callable[[], Coroutine[Any, Any, T]]) -> T:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(load())  # a task of its own: one waiter leaving stops nothing
            self._running[key] = running
            running.add_done_callback(functools.partial(self._done, key))
        result: T = await asyncio.shield(running)
        return result

    def _done(self, key: Any, task: "asyncio.Future[Any]") -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # every waiter may have left: the outcome is not "never retrieved"

    def forget(self) -> None:
        """Loads already running finish for their waiters; later callers start afresh."""
        self._running.clear()


class AccessControl:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl: float = 5.0) -> None:
        self._sessionmaker, self.ttl = sessionmaker, ttl
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._loads = SingleFlight()
        self.epoch = 0  # bumped by every invalidation: caches built on top of this one compare it

    async def _cached(self, key: tuple[Any, ...], load: Callable[[AsyncSession], Awaitable[T]]) -> T:
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            value: T = hit[1]
            return value
        epoch = self.epoch

        async def fetch() -> T:
            async with self._sessionmaker() as session:
                fetched = await load(session)
            if self.epoch == epoch:  # else a change was published meanwhile: this answer may predate it
                self._cache[key] = (time.monotonic() + self.ttl, fetched)
            return fetched

        return await self._loads.run(key, fetch)

    async def user(self, user_id: uuid.UUID) -> UserState | None:
        async def load(session: AsyncSession) -> UserState | None:
            user = await session.get(User, user_id)
            if user is None:
                return None
            return UserState(user.id, user.email, user.disabled_at is None, user.is_admin)

        return await self._cached(("user", user_id), load)

    async def namespace_access(self, user_id: uuid.UUID, namespace: str) -> NamespaceAccess:
        async def load(session: AsyncSession) -> NamespaceAccess:
            query = (
                select(Namespace.allow_exec, Membership.role)
                .outerjoin(
                    Membership, (Membership.namespace_id == Namespace.id) & (Membership.user_id == user_id)
                )
                .where(Namespace.name == namespace)
            )
            row = (await session.execute(query)).first()
            until = time.monotonic() + self.ttl
            return NamespaceAccess(True, row.role, row.allow_exec, until) if row else NamespaceAccess(False)

        return await self._cached(("ns", namespace, user_id), load)

    async def session_active(self, session_id: uuid.UUID) -> bool:
        async def load(session: AsyncSession) -> bool:
            row = await session.get(AuthSession, session_id)
            return row is not None and row.revoked_at is None and row.expires_at > datetime.now(UTC)

        return await self._cached(("session", session_id), load)

    async def api_token_active(self, token_id: uuid.UUID) -> bool:
        async def load(session: AsyncSession) -> bool:
            query = select(func.count()).where(
                ApiToken.id == token_id,
                ApiToken.revoked_at.is_(None),
                (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > func.now()),
            )
            return bool(await session.scalar(query))

        return await self._cached(("token", token_id), load)

    def invalidate(self, message: str) -> None:
        """`user:<id>`, `ns:<name>`, `session:<id>`, `token:<id>` or `*`."""
        self.epoch += 1
        self._loads.forget()
        kind, _, ident = message.partition(":")
        if kind == "*":
            self._cache.clear()
            return
        for key in [k for k in self._cache if _matches(k, kind, ident)]:
            self._cache.pop(key, None)

    async def listen(self, redis: Redis) -> None:
        """Runs for the process's life; after a Redis outage it forgets all: it may have missed news."""
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.invalidate("*")
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.invalidate(message["data"].decode())
            except (RedisError, OSError):
                log.warning("access_invalidation_lost")
                await asyncio.sleep(1)


def _matches(key: tuple[Any, ...], kind: str, ident: str) -> bool:
    """Keys hold UUIDs (cheap to hash on the hot path); messages carry them as text."""
    if kind == "user":
        return (key[0] == "user" and str(key[1]) == ident) or (key[0] == "ns" and str(key[2]) == ident)
    if kind == "ns":
        return key[0] == "ns" and str(key[1]) == ident
    return key[0] == kind and str(key[1]) == ident


async def publish_access_change(redis: Redis, *messages: str) -> None:
    """Tell every process to forget what it cached; the TTL bounds staleness if Redis is down."""
    with contextlib.suppress(RedisError, OSError):
        for message in messages:
            await redis.publish(CHANNEL, message)


class PrincipalCache:
    """Resolved principals per credential, valid while nothing access-related changed (the epoch), for at
    most the access TTL, and never past the token's own expiry: the hot path becomes one dict lookup."""

    def __init__(self, access: AccessControl, size: int = 20_000) -> None:
        self.access, self._size = access, size
        self._entries: dict[Any, tuple[int, float, Any]] = {}

    def get(self, key: Any) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != self.access.epoch or entry[1] < time.monotonic():
            return None
        return entry[2]

    def put(self, key: Any, value: Any, expires_at: float, epoch: int) -> None:
        """`expires_at`: the credential's own expiry, in epoch seconds; `epoch`: the access epoch when
        `value` was worked out (an entry from before a change is never served)."""
        if len(self._entries) >= self._size:
            self._entries.clear()
        now = time.monotonic()
        until = min(now + self.access.ttl, now + expires_at - time.time())
        self._entries[key] = (epoch, until, value)
