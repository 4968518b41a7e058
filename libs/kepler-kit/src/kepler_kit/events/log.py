"""Writing to the platform event log and reading it in order without skipping.

**The ordering trap.** An event's id comes from a sequence when it is inserted, not when its transaction
commits: a reader that has seen id 105 may later find 104 committed (104's transaction was slower). A cursor
of "the last id seen" would skip 104 for good. Each event therefore also stores its transaction's id
(`txid`), and a reader takes only events of transactions older than the oldest still running
(`pg_snapshot_xmin(pg_current_snapshot())`, the horizon): those transactions are over, so no more events can
appear below the horizon, and (txid, id) order is final there. A cursor is a `Position`, (txid, id).

What the horizon costs: an event waits until every transaction that started before its own has ended. A
transaction left open for long (an idle session in a transaction) holds the whole log back; it delays
events, it never loses one. `Batch.held_back` says when committed events wait behind one.

A reader's own transaction: its own events are visible to it (they are not below the horizon, being in
progress). Readers read first, before they write, so in service code this never happens; a test that runs
a whole scenario inside one rolled-back transaction reads what it published.
"""

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, NamedTuple

from sqlalchemy import event as orm_events
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from kepler_db import PlatformEvent
from kepler_db.base import utcnow
from kepler_kit.context import current_request_id
from kepler_kit.events.kinds import KINDS, Event
from kepler_kit.identity import Principal

SYSTEM_ACTOR = "kepler"  # the actor of what the platform did on its own (an automatic rollback)
CHANNEL = "kepler_events"  # notified (by a trigger) when a transaction that published events commits


class Position(NamedTuple):
    """Where a reader is in the log: (txid, id) of the last event it has taken; ordered as the log is."""

    txid: int
    event_id: int


START = Position(0, 0)


def publish(session: AsyncSession, event: Event, *, service: str, actor: Principal | None = None) -> None:
    """Appends `event` to the log in `session`'s transaction: it exists exactly when the change does.

    `actor` is who asked for the change; none means the platform itself. The events of a transaction are
    written together, in one INSERT, when it commits (or earlier, with the next flush that writes other
    rows): one statement per request, however many events it publishes. A rollback drops them."""
    session.info.setdefault(_PENDING, []).append(
        {
            "kind": event.kind,
            "version": event.version,
            "occurred_at": utcnow(),
            "service": service,
            "namespace_id": event.namespace_id,
            "namespace": event.namespace,
            "app_id": event.app_id,
            "app": event.app,
            "actor_id": actor.user_id if actor else None,
            "actor": actor.name if actor else SYSTEM_ACTOR,
            "correlation_id": current_request_id(),
            "data": event.data(),
        }
    )


_PENDING = "kepler_platform_events"
_INSERT = insert(PlatformEvent)


async def write_pending(session: AsyncSession) -> None:
    """Writes the events published so far in `session` now, not at commit: for a test that reads its
    own transaction's events, or wants their ids taken at this point."""
    await session.run_sync(_write_pending)


def _write_pending(session: Session, *_: Any) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.connection().execute(_INSERT, rows)


def _drop_pending(session: Session, *_: Any) -> None:
    """Any rollback drops them: a failed request publishes nothing. (Savepoints are not used with events:
    one rolled back would drop the events published before it too.)"""
    session.info.pop(_PENDING, None)


orm_events.listen(Session, "before_flush", _write_pending)
orm_events.listen(Session, "before_commit", _write_pending)
orm_events.listen(Session, "after_soft_rollback", _drop_pending)


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log keeps it; `event` parses it into its kind's model (on first use)."""

    id: int
    txid: int
    kind: str
    version: int
    occurred_at: datetime
    service: str
    namespace_id: uuid.UUID | None
    namespace: str | None
    app_id: uuid.UUID | None
    app: str | None
    actor_id: uuid.UUID | None
    actor: str
    correlation_id: str | None
    data: dict[str, Any]

    @property
    def position(self) -> Position:
        return Position(self.txid, self.id)

    @cached_property
    def event(self) -> Event | None:
        """The typed event; None for a kind this code does not know (a newer publisher's)."""
        model = KINDS.get(self.kind)
        if model is None or self.version > model.version:
            return None
        envelope = {"namespace_id": self.namespace_id, "namespace": self.namespace}
        return model.model_validate({**self.data, **envelope, "app_id": self.app_id, "app": self.app})


# Finished transactions only, and this one's own events (see the module's docstring). Literal SQL, repeated:
# every query is a constant.
_READ = """
SELECT id, txid, kind, version, occurred_at, service, namespace_id, namespace, app_id, app, actor_id, actor,
       correlation_id, data
FROM platform_events
WHERE (txid, id) > (:txid, :id)
  AND (txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
       OR txid IS NOT DISTINCT FROM pg_current_xact_id_if_assigned()::text::bigint)
  AND (CAST(:kinds AS text[]) IS NULL OR kind = ANY(CAST(:kinds AS text[])))
ORDER BY txid, id
LIMIT :limit
"""
_HEAD = """
SELECT txid, id FROM platform_events
WHERE (txid, id) > (:txid, :id)
  AND (txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
       OR txid IS NOT DISTINCT FROM pg_current_xact_id_if_assigned()::text::bigint)
ORDER BY txid DESC, id DESC
LIMIT 1
"""
_HELD_BACK = """
SELECT EXISTS (
    SELECT 1 FROM platform_events
    WHERE (txid, id) > (:txid, :id)
      AND NOT (txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
               OR txid IS NOT DISTINCT FROM pg_current_xact_id_if_assigned()::text::bigint)
)
"""


@dataclass(frozen=True)
class Batch:
    """What one read found: `events` in log order, `end` the position a reader continues from (past
    events of other kinds too), and `held_back` when committed events wait behind a running transaction."""

    events: Sequence[StoredEvent]
    end: Position
    held_back: bool
    full: bool


async def read_after(
    session: AsyncSession, after: Position, *, kinds: Collection[str] | None = None, limit: int = 500
) -> Batch:
    """The events past `after` that can no longer be overtaken, oldest first, at most `limit`."""
    wanted = sorted(kinds) if kinds is not None else None
    params = {"txid": after.txid, "id": after.event_id, "limit": limit, "kinds": wanted}
    rows = await session.execute(text(_READ), params)
    events = [StoredEvent(*row) for row in rows.all()]
    end = events[-1].position if events else after
    if len(events) >= limit:
        return Batch(events, end, held_back=False, full=True)
    if kinds is not None:  # past the other kinds' events too, so the next read does not scan them again
        end = max(end, await head(session, after))
    return Batch(events, end, await _held_back(session, end), full=False)


async def head(session: AsyncSession, floor: Position = START) -> Position:
    """The last position below the horizon (where a reader that wants only what comes next starts)."""
    row = (await session.execute(text(_HEAD), {"txid": floor.txid, "id": floor.event_id})).first()
    return Position(*row) if row else floor


async def _held_back(session: AsyncSession, end: Position) -> bool:
    row = await session.execute(text(_HELD_BACK), {"txid": end.txid, "id": end.event_id})
    return bool(row.scalar())


async def position_of(session: AsyncSession, event_id: int) -> Position | None:
    """The position just after event `event_id` (a client resuming from it), if it is still kept."""
    txid = await session.scalar(text("SELECT txid FROM platform_events WHERE id = :id"), {"id": event_id})
    return Position(txid, event_id) if txid is not None else None
