"""The feed's filters, applied the same two ways as visibility: as SQL for a list, per event for a
follower (the tail hands every event of the log to every follower, each keeps what it asked for)."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, true

from kepler_db import PlatformEvent
from kepler_kit.errors import ValidationFailed
from kepler_kit.events import StoredEvent
from kepler_kit.events.consumers import expand


@dataclass(frozen=True)
class FeedFilter:
    namespace: str | None = None
    app: str | None = None
    kinds: frozenset[str] | None = None  # None: every kind
    actor: str | None = None  # compared case-insensitively (an email)
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, event: StoredEvent) -> bool:
        return (
            (self.namespace is None or event.namespace == self.namespace)
            and (self.app is None or event.app == self.app)
            and (self.kinds is None or event.kind in self.kinds)
            and (self.actor is None or event.actor.lower() == self.actor)
            and (self.since is None or event.occurred_at >= self.since)
            and (self.until is None or event.occurred_at < self.until)
        )

    def clause(self) -> ColumnElement[bool]:
        conditions = [
            PlatformEvent.namespace == self.namespace if self.namespace is not None else None,
            PlatformEvent.app == self.app if self.app is not None else None,
            PlatformEvent.kind.in_(self.kinds) if self.kinds is not None else None,
            func.lower(PlatformEvent.actor) == self.actor if self.actor is not None else None,
            PlatformEvent.occurred_at >= self.since if self.since is not None else None,
            PlatformEvent.occurred_at < self.until if self.until is not None else None,
        ]
        present = [condition for condition in conditions if condition is not None]
        return and_(true(), *present)


def feed_filter(
    namespace: str | None,
    app: str | None,
    kinds: list[str],
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
) -> FeedFilter:
    """The filter a request asked for; a 422 for what cannot mean anything (an app without its namespace,
    a kind no publisher has, a time range that ends before it starts)."""
    if app is not None and namespace is None:
        raise ValidationFailed("Filtering by app needs its namespace too (`namespace=`).")
    if since is not None and until is not None and until < since:
        raise ValidationFailed("`until` is before `since`.")
    return FeedFilter(namespace, app, _kinds(kinds), actor.lower() if actor else None, since, until)


def _kinds(patterns: list[str]) -> frozenset[str] | None:
    if not patterns:
        return None
    try:
        return expand(patterns)
    except ValueError as exc:
        raise ValidationFailed(
            f"{exc}: name a kind (`deployment.failed`) or a family (`deployment.*`)."
        ) from exc
