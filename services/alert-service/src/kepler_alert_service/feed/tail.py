"""One reader of the event log per process, fanning each event out to every live follower in memory.

200 followers polling Postgres on every wake-up would be 200 queries per commit; the tail makes it one.
It reads the whole log in commit order (`read_after`, below the transaction horizon, so an event whose
transaction committed late is still read, never skipped), woken by LISTEN/NOTIFY, re-reading soon while
committed events wait behind a running transaction, and polling slowly as the safety net.

A follower joins without a gap or a repeat (see `feed.stream.follow`): it subscribes first (from then on
its queue receives every event the tail reads), replays from the database what lies between its resume
position and the tail's position at that moment, then drains its queue, skipping what it replayed. Each
queue is bounded: a follower that cannot keep up is dropped (`Overflowed`), and its client reconnects
with `Last-Event-ID` and loses nothing.
"""

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_alert_service.settings import AlertServiceSettings
from kepler_kit.events import START, Batch, Position, StoredEvent, head, read_after
from kepler_kit.events.consumers import FAILURE_BACKOFF_S, HELD_BACK_S
from kepler_kit.events.wakeups import Wakeups
from kepler_kit.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")
R = TypeVar("R")
BATCH = 500


class Overflowed(Exception):
    """The follower fell too far behind: its queue was full when the tail had another event for it."""


class Subscription:
    """A follower's bounded queue of events, in log order; `wants` drops the others as they arrive."""

    def __init__(self, wants: Callable[[StoredEvent], bool], size: int) -> None:
        self._wants, self._size = wants, size
        self._events: deque[StoredEvent] = deque()
        self._arrived = asyncio.Event()
        self.overflowed = False

    def offer(self, event: StoredEvent) -> None:
        if self.overflowed or not self._wants(event):
            return
        if len(self._events) >= self._size:
            self.overflowed = True
            self._events.clear()
        else:
            self._events.append(event)
        self._arrived.set()

    async def take(self, seconds: float) -> list[StoredEvent]:
        """Everything queued, waiting up to `seconds` for something; [] when nothing came."""
        if not self._events and not self.overflowed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._arrived.wait()
        if self.overflowed:
            raise Overflowed
        self._arrived.clear()
        taken = list(self._events)
        self._events.clear()
        return taken


class Tail:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        wakeups: Wakeups,
        *,
        poll_seconds: float,
        queue_size: int,
    ) -> None:
        self._sessionmaker, self._wakeups = sessionmaker, wakeups
        self._poll, self._queue_size = poll_seconds, queue_size
        self._subscriptions: set[Subscription] = set()
        self.position = START
        self.started = asyncio.Event()
        self._read_ended = asyncio.Event()  # set (and replaced) as each read has been fanned out

    @property
    def followers(self) -> int:
        return len(self._subscriptions)

    async def run(self) -> None:
        """Follows the log from its end for as long as the process serves."""
        self.position = await self._retrying(self._head)
        self.started.set()
        seen, held = self._wakeups.generation, 0
        while True:
            batch = await self._retrying(self._read)
            self._fan_out(batch)
            self._read_ended.set()
            self._read_ended = asyncio.Event()
            if batch.full:
                continue
            held = held + 1 if batch.held_back else 0
            wait = HELD_BACK_S[min(held, len(HELD_BACK_S)) - 1] if held else self._poll
            seen = await self._wakeups.wait(seen, wait)

    async def _head(self) -> Position:
        async with self._sessionmaker() as session:
            return await head(session)

    async def _read(self) -> Batch:
        async with self._sessionmaker() as session:
            return await read_after(session, self.position, limit=BATCH)

    async def _retrying(self, step: Callable[[], Any]) -> Any:
        """A database outage delays the feed; it does not end it (the position is kept meanwhile)."""
        failures = 0
        while True:
            try:
                return await step()
            except Exception as exc:  # an outage (OSError, DBAPIError...) and a bug alike: logged, retried
                failures += 1
                log.warning("feed_tail_read_failed", error=type(exc).__name__, failures=failures)
            await asyncio.sleep(FAILURE_BACKOFF_S[min(failures, len(FAILURE_BACKOFF_S)) - 1])

    def _fan_out(self, batch: Batch) -> None:
        """Synchronous from first event to the position's update: a follower subscribing sees the
        position exactly as far as the events its queue will not get."""
        for event in batch.events:
            for subscription in tuple(self._subscriptions):
                subscription.offer(event)
        self.position = batch.end

    async def subscribe(self, wants: Callable[[StoredEvent], bool]) -> tuple[Subscription, Position]:
        """A queue that gets every wanted event past the returned position (the tail's, now)."""
        await self.started.wait()
        subscription = Subscription(wants, self._queue_size)
        self._subscriptions.add(subscription)
        return subscription, self.position

    async def read_ended(self) -> None:
        """Returns once the read of the log under way (or the next) has been fanned out; after two, every
        event committed before the call has reached the queues."""
        await self._read_ended.wait()

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def replay(self, after: Position, upto: Position) -> AsyncIterator[Sequence[StoredEvent]]:
        """The log's events in (`after`, `upto`], in batches, read from the database (no session is held
        while the caller sends them)."""
        while after < upto:
            async with self._sessionmaker() as session:
                batch = await read_after(session, after, limit=BATCH)
            events = [event for event in batch.events if event.position <= upto]
            if events:
                yield events
            if len(events) < len(batch.events) or not batch.full:
                return
            after = batch.end

    def reader(self, read: Callable[[AsyncSession, T], Awaitable[R]], arg: T) -> Callable[[], Awaitable[R]]:
        """`read(session, arg)` as a follower calls it later, in a session of the tail's: a follower
        holds no session of its request while it streams."""

        async def run() -> R:
            async with self._sessionmaker() as session:
                return await read(session, arg)

        return run

    async def head(self) -> Position:
        """Where a follower that asked for nothing older starts: the log's end, now."""
        return await self._head()


def tail_lifespan(settings: AlertServiceSettings) -> Any:
    """The service's extra lifespan: one tail over the state's sessionmaker, stopped with the service."""

    @asynccontextmanager
    async def lifespan(state: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async with Wakeups(settings.database_url) as wakeups:
            tail = Tail(
                state["sessionmaker"],
                wakeups,
                poll_seconds=settings.feed_poll_seconds,
                queue_size=settings.feed_follower_queue,
            )
            task = asyncio.create_task(tail.run())
            try:
                yield {"feed_tail": tail}
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return lifespan
