"""Wake-ups for readers of the event log: Postgres notifies channel `kepler_events` when a transaction that
published events commits (a trigger of the migration), so a reader reads at once instead of at its next poll.

A notification is only a hint: readers still poll slowly, so one lost while the listening connection was
down delays an event, it never loses one. Redis plays no part: an outage of it delays nothing here.
"""

import asyncio
import contextlib
import functools
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from kepler_kit.events.log import CHANNEL
from kepler_kit.logging import get_logger

log = get_logger(__name__)
RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def asyncpg_dsn(database_url: str) -> str:
    """`postgresql+asyncpg://…` (SQLAlchemy's form) as asyncpg takes it."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _set(event: asyncio.Event, *_: Any) -> None:
    event.set()


class Wakeups:
    """One listening connection per process; any number of readers wait on it. `generation` counts the
    notifications seen, so a reader that was busy when one arrived does not sleep through it."""

    def __init__(self, database_url: str) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._changed = asyncio.Condition()
        self.generation = 0
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Wakeups":
        self._task = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, seen: int, seconds: float) -> int:
        """Returns once a notification newer than generation `seen` arrived, or after `seconds`; returns
        the generation to pass next time."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._changed.wait_for(lambda: self.generation != seen)
            return self.generation

    async def _bump(self) -> None:
        async with self._changed:
            self.generation += 1
            self._changed.notify_all()

    def _notified(self, *_: Any) -> None:
        asyncio.get_running_loop().create_task(self._bump())

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                failures += 1
                log.warning("event_listen_failed", error=type(exc).__name__, failures=failures)
                await asyncio.sleep(RECONNECT_S[min(failures, len(RECONNECT_S)) - 1])
                continue
            try:
                failures = 0
                lost = asyncio.Event()
                connection.add_termination_listener(functools.partial(_set, lost))
                await connection.add_listener(CHANNEL, self._notified)
                self.connected.set()
                await self._bump()  # something may have committed while we were not listening
                await lost.wait()
            except (OSError, asyncpg.PostgresError):
                pass
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)
