"""For tests of the feed: the service served by uvicorn on a loopback port (so a test reads Server-Sent
Events as a client does, frame by frame: httpx's ASGI transport returns a response only once it has
ended, and a feed never ends), callers of every kind, and a reader of event streams."""

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.feed.tail import Tail
from kepler_db import Namespace, NamespaceStatus, PlatformEvent, Role, TokenScope, User
from kepler_kit.events import Event, Position, publish, write_pending
from kepler_kit.events.kinds import AlertFiring, AnnouncementPublished, AppScaled
from kepler_kit.identity import Principal
from kepler_kit.testing.identities import Minter, make_member, make_user

SERVICE = "alert-service"


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """uvicorn on an ephemeral loopback port (bound first, so the port is known before start)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        server.force_exit = True  # open streams are the test's to close; do not wait for them
        await task
        sock.close()


@dataclass
class Feed:
    """The running service: `url` to call it over HTTP, its `tail`, and the test's `session` to publish."""

    url: str
    tail: Tail
    session: AsyncSession
    principal: Principal = field(default_factory=lambda: Principal(uuid.uuid4(), "dev@example.com"))

    async def publish(self, *events: Event, actor: Principal | None = None) -> list[int]:
        """Publishes `events` as app-service would, returning their ids (in order)."""
        for event in events:
            publish(self.session, event, service="app-service", actor=actor or self.principal)
        await self.session.flush()  # with the rows the test changed (a membership removed, say)
        await write_pending(self.session)
        return await self.newest(len(events))

    async def newest(self, count: int) -> list[int]:
        query = select(PlatformEvent.id).order_by(PlatformEvent.id.desc()).limit(count)
        return sorted((await self.session.scalars(query)).all())

    async def caught_up(self) -> Position:
        """Waits until the tail has read everything published so far; returns its position."""
        await self.tail.read_ended()
        await self.tail.read_ended()  # one that began after the last publish
        return self.tail.position


# --- who calls -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    label: str
    user: str | None  # key in World.users; None: anonymous
    scope: TokenScope | None = None
    token_namespace: str | None = None


CALLERS = [
    Caller("admin", "admin"),
    Caller("owner of A", "owner"),
    Caller("maintainer of A", "maintainer"),
    Caller("developer of A", "developer"),
    Caller("viewer of A", "viewer"),
    Caller("member of B only", "outsider"),
    Caller("token confined to A", "owner", token_namespace="team-a"),  # noqa: S106 (not a secret)
    Caller("read-scope token of A's owner", "owner", scope=TokenScope.read),
    Caller("anonymous", None),
]


@dataclass
class World:
    """team-a (a member of each role) and team-b (owned by an outsider), and a platform admin."""

    minter: Minter
    users: dict[str, User] = field(default_factory=dict)
    namespaces: dict[str, uuid.UUID] = field(default_factory=dict)

    def headers_for(self, user: str) -> dict[str, str]:
        return self.minter.identity(self.users[user], SERVICE)

    def headers(self, caller: Caller) -> dict[str, str]:
        if caller.user is None:
            return {}
        user = self.users[caller.user]
        return self.minter.identity(user, SERVICE, scope=caller.scope, namespace=caller.token_namespace)


async def build_world(session: AsyncSession, minter: Minter) -> World:
    world = World(minter)
    for name in ("team-a", "team-b"):
        session.add(Namespace(name=name, status=NamespaceStatus.active))
    await session.flush()
    rows = await session.execute(select(Namespace.name, Namespace.id))
    world.namespaces = {name: namespace_id for name, namespace_id in rows.all()}  # noqa: C416
    world.users["admin"] = await make_user(session, "admin@example.com", is_admin=True)
    for role in Role:
        world.users[role.value] = user = await make_user(session, f"{role.value}@example.com")
        await make_member(session, user, "team-a", role)
    world.users["outsider"] = outsider = await make_user(session, "outsider@example.com")
    await make_member(session, outsider, "team-b", Role.owner)
    return world


# --- reading a stream ------------------------------------------------------------------------------------

DEADLOCK_GUARD = 10  # seconds; only reached when an expected frame never comes


@dataclass(frozen=True)
class Frame:
    id: str | None
    event: str | None
    data: dict[str, Any] | None  # None: a comment (keep-alive)


class Reader:
    """A stream's frames as they arrive, comments (keep-alives) included; `None` once it has ended."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> Frame | None:
        lines: list[str] = []
        async with asyncio.timeout(DEADLOCK_GUARD):
            async for line in self._lines:
                if line:
                    lines.append(line)
                elif lines:
                    return parse(lines)
        return None

    async def until_idle(self) -> list[Frame]:
        """Every event frame up to the first keep-alive: the stream had nothing more to send."""
        received = []
        while (frame := await self.next()) is not None and frame.data is not None:
            received.append(frame)
        return received

    async def take(self, count: int) -> list[Frame]:
        """The next `count` event frames (keep-alives skipped)."""
        received: list[Frame] = []
        while len(received) < count:
            frame = await self.next()
            if frame is None:
                raise AssertionError(f"the stream ended after {received}")
            if frame.data is not None:
                received.append(frame)
        return received


def parse(lines: list[str]) -> Frame:
    if all(line.startswith(":") for line in lines):
        return Frame(None, None, None)
    fields = {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return Frame(fields.get("id") or None, fields.get("event"), json.loads(fields.get("data", "null")))


# --- events ----------------------------------------------------------------------------------------------


def scaled(world: World, namespace: str, replicas: int, app: str = "web") -> AppScaled:
    """An app's event in `namespace` (told apart by `replicas`)."""
    namespace_id = world.namespaces[namespace]
    return AppScaled(namespace_id=namespace_id, namespace=namespace, app=app, replicas=replicas, before=None)


def announcement(title: str = "Maintenance tonight") -> AnnouncementPublished:
    """Platform-wide: for everyone signed in."""
    return AnnouncementPublished(announcement_id=uuid.uuid4(), title=title, severity="info")


def platform_alert() -> AlertFiring:
    """Names no namespace and is no announcement: for admins only."""
    return AlertFiring(alert="EtcdSlow", fingerprint="f00d", severity="warning")
