"""The inbox consumer: every event of the log, turned into notifications for the users it concerns.

One statement per batch, whatever its size: the recipients of all its events are worked out together in
Postgres (the defaults of `policy`, the users' follows, minus their mutes) and inserted with
`ON CONFLICT DO NOTHING`, so a redelivered batch (after a crash, or a cursor moved back) adds nothing.
The statement runs in the consumer's step transaction: the notifications and the cursor commit together.

What a follow may reach is checked here, at delivery, not when the rule was made: a user removed from a
namespace stops hearing of it at once, whatever rules they left behind.
"""

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.inbox.policy import TOLD_TO_THEIR_ACTOR, audience
from kepler_kit.events import Consumer, StoredEvent
from kepler_kit.events.kinds import FAMILIES

NAME = "alert-service.inbox"

# `matched`: every rule an event matches (its kind, or its family `deployment.*`; everywhere, or its
# namespace or app). An equality join on the pattern, so Postgres can hash it against all the rules.
_DELIVER = """
WITH batch AS (
    SELECT e.id, e.kind, e.namespace_id, e.app_id, e.actor_id, p.audience, p.tell_actor
    FROM unnest(CAST(:ids AS bigint[]), CAST(:audiences AS text[]), CAST(:tell_actor AS boolean[]))
         AS p(id, audience, tell_actor)
    JOIN platform_events e ON e.id = p.id
    WHERE NOT EXISTS (
        SELECT 1 FROM announcements a
        WHERE e.kind = 'announcement.published' AND a.withdrawn_at IS NOT NULL
          AND a.id::text = e.data ->> 'announcement_id'
    )
),
matched AS (
    SELECT b.id AS event_id, r.user_id, r.muted
    FROM batch b
    CROSS JOIN LATERAL (VALUES (b.kind), (split_part(b.kind, '.', 1) || '.*')) AS p(pattern)
    JOIN inbox_rules r ON r.pattern = p.pattern
    WHERE (r.namespace_id IS NULL OR r.namespace_id = b.namespace_id)
      AND (r.app_id IS NULL OR r.app_id = b.app_id)
),
candidates AS (
    SELECT b.id AS event_id, m.user_id,
           CASE b.audience WHEN 'approvers' THEN 'approver' ELSE m.role::text END AS reason, 0 AS rank
    FROM batch b JOIN memberships m ON m.namespace_id = b.namespace_id
    WHERE b.audience = 'members'
       OR (b.audience IN ('maintainers', 'approvers') AND m.role IN ('owner', 'maintainer'))
    UNION ALL
    SELECT b.id, u.id, 'everyone', 0 FROM batch b JOIN users u ON b.audience = 'everyone'
    UNION ALL
    SELECT f.event_id, f.user_id, 'follow', 1
    FROM matched f JOIN batch b ON b.id = f.event_id
    WHERE NOT f.muted
      AND (EXISTS (SELECT 1 FROM memberships m
                   WHERE m.user_id = f.user_id AND m.namespace_id = b.namespace_id)
           OR EXISTS (SELECT 1 FROM users a WHERE a.id = f.user_id AND a.is_admin))
)
INSERT INTO notifications (user_id, event_id, reason)
SELECT DISTINCT ON (c.event_id, c.user_id) c.user_id, c.event_id, c.reason
FROM candidates c
JOIN batch b ON b.id = c.event_id
JOIN users u ON u.id = c.user_id AND u.disabled_at IS NULL
WHERE (b.tell_actor OR b.actor_id IS DISTINCT FROM c.user_id)
  AND NOT EXISTS (SELECT 1 FROM matched x WHERE x.muted AND x.event_id = c.event_id AND x.user_id = c.user_id)
ORDER BY c.event_id, c.user_id, c.rank
ON CONFLICT (user_id, event_id) DO NOTHING
"""


async def deliver(session: AsyncSession, events: Sequence[StoredEvent]) -> None:
    """Idempotent per (user, event): the unique constraint has the last word on a redelivery."""
    audiences = [audience(event) for event in events]
    await session.execute(
        text(_DELIVER),
        {
            "ids": [event.id for event in events],
            "audiences": [str(a) if a is not None else None for a in audiences],
            "tell_actor": [event.kind in TOLD_TO_THEIR_ACTOR for event in events],
        },
    )


# Every kind: a user's follow may name any of them. Start at the end of the log when first deployed.
INBOX = Consumer(NAME, sorted(f"{family}.*" for family in FAMILIES), deliver, from_now=True)
