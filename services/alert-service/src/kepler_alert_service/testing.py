"""alert-service's test helpers, typed for every test module of the package: a small world of
namespaces, apps and users of every role, identities for its users, and the inbox consumer over a test's
transaction (events published there, delivered by `Inbox.deliver`)."""

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_alert_service.inbox.consumer import INBOX
from kepler_db import App, Namespace, NamespaceStatus, Notification, PlatformEvent, Role, TokenScope, User
from kepler_kit.events import Event, drain, publish, write_pending
from kepler_kit.identity import Principal
from kepler_kit.testing.identities import Minter, make_member, make_user

SERVICE = "alert-service"


@dataclass
class World:
    """team-a (apps `web` and `api`) with one member per role; team-b owned by `outsider`; an admin."""

    namespaces: dict[str, Namespace] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)

    def __getitem__(self, name: str) -> User:
        return self.users[name]


async def build_world(session: AsyncSession) -> World:
    world = World()
    for name in ("team-a", "team-b"):
        world.namespaces[name] = Namespace(name=name, status=NamespaceStatus.active)
        session.add(world.namespaces[name])
    await session.flush()
    for name in ("web", "api"):
        world.apps[name] = App(namespace_id=world.namespaces["team-a"].id, name=name, ports=[])
        session.add(world.apps[name])
    world.users["admin"] = await make_user(session, "admin@example.com", is_admin=True)
    for role in Role:
        world.users[role.value] = await make_user(session, f"{role.value}@example.com")
        await make_member(session, world.users[role.value], "team-a", role)
    world.users["outsider"] = await make_user(session, "outsider@example.com")
    await make_member(session, world.users["outsider"], "team-b", Role.owner)
    return world


@dataclass
class Identities:
    """The gateway's identity headers for a world's user (optionally as a scoped or confined API token)."""

    minter: Minter
    world: World

    def __call__(
        self, name: str, scope: TokenScope | None = None, namespace: str | None = None
    ) -> dict[str, str]:
        return self.minter.identity(self.world[name], SERVICE, scope=scope, namespace=namespace)


@dataclass
class Inbox:
    """The inbox consumer over the test's transaction: events published here, delivered by `deliver`."""

    session: AsyncSession
    sessionmaker: async_sessionmaker[AsyncSession]
    world: World

    async def publish(self, event: Event, actor: str | None = None) -> int:
        """As the service owning `event` would, in the test's transaction; `actor` None: the platform.
        Returns the event's id in the log."""
        who = self.world[actor] if actor else None
        principal = Principal(user_id=who.id, name=who.email) if who else None
        publish(self.session, event, service="test", actor=principal)
        await write_pending(self.session)
        return int(await self.session.scalar(select(func.max(PlatformEvent.id))) or 0)

    async def deliver(self) -> int:
        return await drain(self.sessionmaker, INBOX)

    async def recipients(self, event_id: int) -> dict[str, str]:
        """Who was notified of the event, with the reason: {user name: reason}."""
        names = {user.id: name for name, user in self.world.users.items()}
        query = select(Notification.user_id, Notification.reason).where(Notification.event_id == event_id)
        return {names[user_id]: reason for user_id, reason in (await self.session.execute(query)).all()}

    async def count(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(Notification)) or 0)
