"""Consumers of the event log: a service's worker subscribes to kinds of event and handles them in order.

Delivery is at least once, in log order, with the cursor stored in Postgres. A consumer's step is one
transaction: take the consumer's lock, read a batch past its cursor, run the handler, move the cursor. The
handler's writes and the cursor commit together, so an effect in the database happens exactly once; a crash
(or `kill -9`) mid-batch rolls both back and the batch is delivered again. A handler with effects outside
the database makes them idempotent, keyed by the event id.

Several workers may run the same consumer: a transaction-level advisory lock lets one step run at a time,
the others find it taken and wait for the next wake-up.
"""

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_kit.events.kinds import KINDS
from kepler_kit.events.log import START, Batch, Position, StoredEvent, head, read_after
from kepler_kit.events.wakeups import Wakeups
from kepler_kit.faults import is_transient
from kepler_kit.logging import get_logger
from kepler_kit.metrics import EVENT_CONSUMER_FAILURES, EVENT_CONSUMER_LAG, EVENTS_CONSUMED

log = get_logger(__name__)
Handler = Callable[[AsyncSession, Sequence[StoredEvent]], Awaitable[None]]
_LOCK_CLASS = 0x4B45  # the advisory-lock class of consumer locks (the second key is the name's CRC)
POLL_S = 2.0  # unwoken, a consumer still looks this often: the safety net under notifications
HELD_BACK_S = (0.01, 0.02, 0.05, 0.1, 0.2)  # re-reads while committed events wait behind a transaction
FAILURE_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def expand(patterns: Collection[str]) -> frozenset[str]:
    """Kinds named exactly or by family (`deployment.*`); a pattern that names no known kind is a bug."""
    kinds: set[str] = set()
    for pattern in patterns:
        family = pattern.removesuffix(".*")
        found = {k for k in KINDS if k == pattern or (pattern.endswith(".*") and k.startswith(family + "."))}
        if not found:
            raise ValueError(f"no event kind matches {pattern!r}")
        kinds |= found
    return frozenset(kinds)


@dataclass(frozen=True)
class Consumer:
    """`name` identifies the cursor (keep it once deployed); `kinds` are kinds or families (`build.*`).
    `from_now`: a new consumer starts at the end of the log instead of working through all of it."""

    name: str
    patterns: Collection[str]
    handle: Handler
    batch: int = 500
    from_now: bool = False
    kinds: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", expand(self.patterns))


@dataclass(frozen=True)
class Step:
    handled: int
    more: bool  # a full batch: read again at once
    held_back: bool  # committed events wait behind a running transaction: read again soon
    busy: bool = False  # another worker runs this consumer


async def consume_once(sessionmaker: async_sessionmaker[AsyncSession], consumer: Consumer) -> Step:
    """One step of `consumer`, in one transaction."""
    async with sessionmaker() as session, session.begin():
        if not await _lock(session, consumer.name):
            return Step(0, more=False, held_back=False, busy=True)
        cursor = await _cursor(session, consumer)
        batch = await read_after(session, cursor, kinds=consumer.kinds, limit=consumer.batch)
        if batch.events:
            await consumer.handle(session, batch.events)
        if batch.end != cursor:
            await _advance(session, consumer.name, batch)
    _observe(consumer, batch)
    return Step(len(batch.events), more=batch.full, held_back=batch.held_back)


async def _lock(session: AsyncSession, name: str) -> bool:
    key = zlib.crc32(name.encode()) - 2**31  # advisory keys are signed 32-bit
    query = text("SELECT pg_try_advisory_xact_lock(:cls, :key)")
    return bool(await session.scalar(query, {"cls": _LOCK_CLASS, "key": key}))


async def _cursor(session: AsyncSession, consumer: Consumer) -> Position:
    row = (
        await session.execute(
            text("SELECT txid, event_id FROM event_consumers WHERE name = :name"), {"name": consumer.name}
        )
    ).first()
    if row is not None:
        return Position(*row)
    start = await head(session) if consumer.from_now else START
    await session.execute(
        text("INSERT INTO event_consumers (name, txid, event_id, consumed) VALUES (:name, :txid, :id, 0)"),
        {"name": consumer.name, "txid": start.txid, "id": start.event_id},
    )
    return start


async def _advance(session: AsyncSession, name: str, batch: Batch) -> None:
    await session.execute(
        text(
            "UPDATE event_consumers SET txid = :txid, event_id = :id, consumed = consumed + :n,"
            " updated_at = now() WHERE name = :name"
        ),
        {"name": name, "txid": batch.end.txid, "id": batch.end.event_id, "n": len(batch.events)},
    )


def _observe(consumer: Consumer, batch: Batch) -> None:
    if batch.events:
        EVENTS_CONSUMED.labels(consumer.name).inc(len(batch.events))
        lag = time.time() - batch.events[-1].occurred_at.timestamp()
        EVENT_CONSUMER_LAG.labels(consumer.name).set(max(lag, 0.0))
    elif not batch.held_back:
        EVENT_CONSUMER_LAG.labels(consumer.name).set(0.0)


async def drain(
    sessionmaker: async_sessionmaker[AsyncSession], consumer: Consumer, *, rounds: int = 1000
) -> int:
    """Runs `consumer` until it has caught up with the log; returns how many events it handled. For tests
    and one-off catch-ups: a worker runs `follow` instead."""
    handled = 0
    for _ in range(rounds):
        step = await consume_once(sessionmaker, consumer)
        handled += step.handled
        if not (step.more or step.held_back or step.busy):
            return handled
        if not step.more:
            await asyncio.sleep(0.01)
    raise RuntimeError(f"consumer {consumer.name} did not catch up in {rounds} rounds")


async def follow(
    sessionmaker: async_sessionmaker[AsyncSession],
    consumer: Consumer,
    wakeups: Wakeups,
    poll_seconds: float = POLL_S,
) -> None:
    """Runs `consumer` for as long as the worker runs: at once on each notification, every `poll_seconds`
    regardless. A failing handler is retried with backoff on the same batch (nothing is skipped), and each
    failure is logged and counted."""
    seen, held, failures = wakeups.generation, 0, 0
    while True:
        try:
            step = await consume_once(sessionmaker, consumer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            EVENT_CONSUMER_FAILURES.labels(consumer.name).inc()
            event = "event_consumer_unavailable" if is_transient(exc) else "event_consumer_failed"
            log.warning(event, consumer=consumer.name, failures=failures, exc_info=not is_transient(exc))
            await asyncio.sleep(FAILURE_BACKOFF_S[min(failures, len(FAILURE_BACKOFF_S)) - 1])
            continue
        failures = 0
        if step.more:
            continue
        if step.held_back:
            held += 1
            seen = await wakeups.wait(seen, HELD_BACK_S[min(held, len(HELD_BACK_S)) - 1])
            continue
        held = 0
        seen = await wakeups.wait(seen, poll_seconds)


async def run_consumers(
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    consumers: Sequence[Consumer],
    poll_seconds: float = POLL_S,
) -> None:
    """Every consumer of a worker, sharing one listening connection; runs until cancelled."""
    async with Wakeups(database_url) as wakeups, asyncio.TaskGroup() as group:
        for consumer in consumers:
            group.create_task(follow(sessionmaker, consumer, wakeups, poll_seconds))
