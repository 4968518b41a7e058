"""A live follower of the feed: Server-Sent Events from the process's tail, resuming after `Last-Event-ID`.

Every event once, in log order, across a reconnect: the follower subscribes to the tail, replays from the
database what lies between where it resumes and where the tail was when it subscribed, then takes its
queue, skipping any event at or before the last one it sent (`last`). Positions order the log, so the one
comparison covers both a replay that overlaps the queue and a resume point ahead of this process's tail
(the client was served by another replica).
"""

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from kepler_alert_service.feed.filters import FeedFilter
from kepler_alert_service.feed.schemas import RESET, feed_event
from kepler_alert_service.feed.tail import Overflowed, Tail
from kepler_alert_service.visibility import Viewer
from kepler_kit.events import START, Position, StoredEvent
from kepler_kit.logging import get_logger

log = get_logger(__name__)
KEEP_ALIVE = ": keep-alive\n\n"


@dataclass(frozen=True)
class Resume:
    """Where a follower starts: after `position`; `reset` when its `Last-Event-ID` was not found."""

    position: Position
    reset: bool = False


def frame(event: StoredEvent) -> str:
    data = feed_event(event).model_dump_json()
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


def reset_frame(position: Position) -> str:
    """Carries the newest event's id, so the client's next reconnect resumes from here, not again from
    an id the log no longer has (an empty id makes it send none: the log is empty)."""
    event_id = position.event_id if position != START else ""
    data = json.dumps({"reason": "Last-Event-ID is not an event the log keeps; the stream starts now."})
    return f"id: {event_id}\nevent: {RESET}\ndata: {data}\n\n"


class Follower:
    def __init__(self, tail: Tail, viewer: Viewer, wanted: FeedFilter, keepalive: float) -> None:
        self.tail, self.viewer, self.wanted, self.keepalive = tail, viewer, wanted, keepalive
        self.last = START

    def _wants(self, event: StoredEvent) -> bool:
        """What the queue keeps: the filter's events, and those that change what this viewer sees."""
        return self.wanted.matches(event) or self.viewer.concerns(event)

    async def frames(self, resume: Resume) -> AsyncIterator[str]:
        subscription, upto = await self.tail.subscribe(self._wants)
        try:
            if resume.reset:
                yield reset_frame(resume.position)
            self.last = resume.position
            async for batch in self.tail.replay(resume.position, upto):
                for text in await self._send(batch):
                    yield text
            while self.viewer.current.active:
                events = await subscription.take(self.keepalive)
                sent = await self._send(events)
                for text in sent or ([] if events else [KEEP_ALIVE]):
                    yield text
        except Overflowed:
            log.info("feed_follower_dropped", reason="queue full", followers=self.tail.followers)
        finally:
            self.tail.unsubscribe(subscription)

    async def _send(self, events: Iterable[StoredEvent]) -> list[str]:
        """The frames of the events past `last` this viewer may see and asked for."""
        texts = []
        for event in events:
            if event.position <= self.last:
                continue
            self.last = event.position
            if await self.viewer.sees(event) and self.wanted.matches(event):
                texts.append(frame(event))
        return texts
