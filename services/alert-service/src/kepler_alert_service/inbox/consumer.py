"""The inbox consumer: every event of the log, turned into notifications for the users it concerns.

One statement per batch, whatever its size: the recipients of all its events are worked out together in
Postgres (the defaults of `policy`, the users' follows, minus their mutes) and inserted with
`ON CONFLICT DO NOTHING`, so a redelivered batch (after a crash, or a cursor moved back) adds nothing.
The statement runs in the consumer's step transaction: the notifications and the cursor commit together.

What a follow may reach is checked here, at delivery, not when the rule was made: a user removed from a
namespace stops hearing of it at once, whatever rules they left behind.
"""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.inbox import repository
from kepler_alert_service.inbox.policy import TOLD_TO_THEIR_ACTOR, audience
from kepler_kit.events import Consumer, StoredEvent
from kepler_kit.events.kinds import FAMILIES

NAME = "alert-service.inbox"


async def deliver(session: AsyncSession, events: Sequence[StoredEvent]) -> None:
    """Idempotent per (user, event): the unique constraint has the last word on a redelivery."""
    audiences = [audience(event) for event in events]
    await repository.deliver(
        session,
        [event.id for event in events],
        [str(a) if a is not None else None for a in audiences],
        [event.kind in TOLD_TO_THEIR_ACTOR for event in events],
    )


# Every kind: a user's follow may name any of them. Start at the end of the log when first deployed.
INBOX = Consumer(NAME, sorted(f"{family}.*" for family in FAMILIES), deliver, from_now=True)
