"""Who hears of an event by default, before the users' own rules: the inbox's policy, as data.

Deploy and build outcomes reach the people answerable for a namespace (its maintainers and owners);
what merely started or was asked for (`deployment.requested`, `build.queued`, `release.created`) reaches
only those who follow it. A user never hears of their own action, except of what went wrong after it
(a failed deploy or build, a rollback): the one who set it off needs that most.
"""

import enum
from collections.abc import Iterable

from kepler_kit.events import StoredEvent
from kepler_kit.events.consumers import expand


class Audience(enum.StrEnum):
    maintainers = "maintainers"  # maintainers and owners of the event's namespace
    approvers = "approvers"  # the same people, as those who may approve
    members = "members"  # everyone with a role in the event's namespace
    everyone = "everyone"  # every active user


def _each(patterns: Iterable[str], audience: Audience) -> dict[str, Audience]:
    return dict.fromkeys(expand(list(patterns)), audience)


DEFAULTS: dict[str, Audience] = {
    **_each(["deployment.succeeded", "deployment.failed", "deployment.rolled_back"], Audience.maintainers),
    **_each(["build.succeeded", "build.failed"], Audience.maintainers),
    **_each(["alert.*"], Audience.maintainers),
    **_each(["approval.requested"], Audience.approvers),
}
TOLD_TO_THEIR_ACTOR = expand(["deployment.failed", "deployment.rolled_back", "build.failed"])


def audience(event: StoredEvent) -> Audience | None:
    """An announcement reaches its namespace's members, or everyone when it names no namespace."""
    if event.kind == "announcement.published":
        return Audience.members if event.namespace_id is not None else Audience.everyone
    if event.namespace_id is None:
        return None  # namespaced audiences of an event of no namespace: nobody
    return DEFAULTS.get(event.kind)
