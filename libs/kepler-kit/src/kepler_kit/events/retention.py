"""Keeping the event log bounded: events older than the retention are deleted, in short transactions (a
long one would hold the horizon of every reader back), and a consumer whose cursor is still before them is
reported: it will never see those events. Retention wins over a stuck consumer, and says so loudly."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_kit.logging import get_logger
from kepler_kit.metrics import EVENT_CONSUMER_BEHIND_RETENTION, EVENTS_PRUNED

log = get_logger(__name__)
BATCH = 5000

_NEWEST_EXPIRED = """
SELECT txid, id FROM platform_events WHERE occurred_at < :before ORDER BY txid DESC, id DESC LIMIT 1
"""
_BEHIND = """
SELECT name, (SELECT count(*) FROM platform_events e
              WHERE e.occurred_at < :before AND (e.txid, e.id) > (c.txid, c.event_id)) AS missed
FROM event_consumers c
WHERE (c.txid, c.event_id) < (:txid, :id)
ORDER BY name
"""
_DELETE = """
DELETE FROM platform_events WHERE id IN (
    SELECT id FROM platform_events WHERE occurred_at < :before ORDER BY id LIMIT :batch
)
"""


@dataclass(frozen=True)
class Pruned:
    deleted: int
    behind: dict[str, int]  # consumer → expired events it had not consumed


async def prune(sessionmaker: async_sessionmaker[AsyncSession], before: datetime) -> Pruned:
    """Deletes the events that occurred before `before`; reports the consumers that had not got to them."""
    async with sessionmaker() as session:
        behind = await _behind(session, before)
    for consumer, missed in behind.items():
        log.error(
            "event_consumer_behind_retention", consumer=consumer, missed=missed, before=before.isoformat()
        )
    for consumer in behind:
        EVENT_CONSUMER_BEHIND_RETENTION.labels(consumer).set(1)
    deleted = 0
    while True:
        async with sessionmaker() as session, session.begin():
            result = await session.execute(text(_DELETE), {"before": before, "batch": BATCH})
            batch = cast(CursorResult[Any], result).rowcount
        deleted += batch
        if batch < BATCH:
            break
    EVENTS_PRUNED.inc(deleted)
    return Pruned(deleted, behind)


async def _behind(session: AsyncSession, before: datetime) -> dict[str, int]:
    newest = (await session.execute(text(_NEWEST_EXPIRED), {"before": before})).first()
    if newest is None:
        return {}
    params = {"before": before, "txid": newest.txid, "id": newest.id}
    return {row.name: row.missed for row in await session.execute(text(_BEHIND), params)}
