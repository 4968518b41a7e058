"""The platform event log: every service publishes what happened (`publish`, in the transaction of the
change), and consumers and the activity feed read it in order (`read_after`, `Consumer`)."""

from kepler_kit.events.consumers import Consumer, consume_once, drain, follow, run_consumers
from kepler_kit.events.kinds import KINDS, Event
from kepler_kit.events.log import (
    START,
    SYSTEM_ACTOR,
    Batch,
    Position,
    StoredEvent,
    head,
    position_of,
    publish,
    read_after,
    write_pending,
)

__all__ = [
    "KINDS",
    "START",
    "SYSTEM_ACTOR",
    "Batch",
    "Consumer",
    "Event",
    "Position",
    "StoredEvent",
    "consume_once",
    "drain",
    "follow",
    "head",
    "position_of",
    "publish",
    "read_after",
    "run_consumers",
    "write_pending",
]
