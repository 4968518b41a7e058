"""Which platform events a caller may see: those of the namespaces they are a member of (any role), every
one for a platform admin, only its namespace's for a token confined to one; of the events that name no
namespace, platform announcements are for everyone signed in and the rest for admins.

Memberships are matched by namespace id, not name: a namespace deleted and created again under the same
name by other people does not show them the history of the old one. A confined token is matched by name
(that is what it names), and its user must still be a member unless an admin.

The feed applies one `Visibility` two ways: as SQL for a list (`clause`), and per event for a live
follower (`sees`), whose `Viewer` reads the caller's memberships again on a TTL, and at once when an event
says that the caller's own membership changed.
"""

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import Membership, PlatformEvent, User
from kepler_kit.access import authorize
from kepler_kit.errors import Unauthorized
from kepler_kit.events import StoredEvent
from kepler_kit.identity import Principal
from kepler_kit.permissions import Action

PLATFORM_WIDE = frozenset({"announcement.published"})  # kinds without a namespace that everyone sees
MEMBER_KINDS = frozenset({"member.added", "member.changed", "member.removed"})


@dataclass(frozen=True)
class Visibility:
    user_id: uuid.UUID
    is_admin: bool
    namespace_ids: frozenset[uuid.UUID]
    token_namespace: str | None = None
    active: bool = True

    def sees(self, event: StoredEvent) -> bool:
        """The per-event form of `clause`, for events already in memory."""
        if not self.active:
            return False
        if self.token_namespace is not None:
            return event.namespace == self.token_namespace and self._member_of(event.namespace_id)
        if event.namespace_id is None:
            return self.is_admin or event.kind in PLATFORM_WIDE
        return self._member_of(event.namespace_id)

    def _member_of(self, namespace_id: uuid.UUID | None) -> bool:
        return self.is_admin or namespace_id in self.namespace_ids

    def clause(self) -> ColumnElement[bool]:
        """The rows of `platform_events` this caller may see, as a WHERE clause."""
        if not self.active:
            return false()
        member = true() if self.is_admin else PlatformEvent.namespace_id.in_(self.namespace_ids)
        if self.token_namespace is not None:
            return and_(PlatformEvent.namespace == self.token_namespace, member)
        if self.is_admin:
            return true()
        platform_wide = and_(PlatformEvent.namespace_id.is_(None), PlatformEvent.kind.in_(PLATFORM_WIDE))
        return or_(member, platform_wide)


async def visibility_of(session: AsyncSession, principal: Principal) -> Visibility:
    """What `principal` sees now: admin status and activity are read live (not taken from the token)."""
    user_id = principal.user_id
    if user_id is None:  # the route's `require` refused anonymous callers: never reached
        raise Unauthorized("Sign in, or send an access or API token.")
    user = await session.get(User, user_id)
    rows = await session.scalars(select(Membership.namespace_id).where(Membership.user_id == user_id))
    return Visibility(
        user_id=user_id,
        is_admin=user is not None and user.is_admin,
        namespace_ids=frozenset(rows.all()),
        token_namespace=principal.token_namespace,
        active=user is not None and user.disabled_at is None,
    )


async def check_namespace_filter(request: Request) -> None:
    """Filtering by a namespace the caller cannot see is a 404, as any other route in it: the feed must not
    tell which namespaces exist. Decided (and a denial audited) as `namespace.view` in that namespace."""
    await authorize(request, Action.namespace_view)


class Viewer:
    """A live follower's visibility, kept current: read again once `ttl` seconds old, and at once after an
    event about this user's own membership (`notice`)."""

    def __init__(self, load: Callable[[], Awaitable[Visibility]], first: Visibility, ttl: float) -> None:
        self._load, self.current, self._ttl = load, first, ttl
        self._fresh_until = time.monotonic() + ttl

    def concerns(self, event: StoredEvent) -> bool:
        """An event that changes what this viewer sees: their own membership."""
        return event.kind in MEMBER_KINDS and event.data.get("user_id") == str(self.current.user_id)

    async def sees(self, event: StoredEvent) -> bool:
        if self.concerns(event) or time.monotonic() >= self._fresh_until:
            self.current = await self._load()
            self._fresh_until = time.monotonic() + self._ttl
        return self.current.sees(event)
