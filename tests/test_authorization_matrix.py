"""Every operation of every service × every kind of caller, generated from the OpenAPI documents.

A new route without a declared permission fails `test_every_operation_declares_a_permission`; a route
that declares one but does not enforce it fails the matrix.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp

from kepler_alert_service.app import create_app as alert_app
from kepler_alert_service.settings import AlertServiceSettings
from kepler_app_service.app import create_app as app_app
from kepler_app_service.settings import AppServiceSettings
from kepler_build_service.app import create_app as build_app
from kepler_build_service.settings import BuildServiceSettings
from kepler_db import ApiToken, App, Namespace, NamespaceStatus, Role, TokenScope, User
from kepler_gateway.app import Gateway
from kepler_gateway.app import create_app as create_gateway
from kepler_gateway.identity.settings import AuthSettings
from kepler_gateway.settings import GatewaySettings
from kepler_gateway.testing import gateway_client
from kepler_kit.crypto import token_digest
from kepler_kit.permissions import PERMISSIONS, ROLE_RANK, SCOPE_RANK, Action
from kepler_kit.testing.identities import TEST_SECRET, Minter, make_member, make_user
from kepler_kit.testing.services import WithState, service_client
from kepler_terminal_service.app import create_app as terminal_app
from kepler_terminal_service.settings import TerminalServiceSettings

SERVICES: dict[str, Callable[[dict[str, Any]], FastAPI]] = {
    "app-service": lambda kw: app_app(AppServiceSettings(**kw)),
    "build-service": lambda kw: build_app(BuildServiceSettings(**kw)),
    "alert-service": lambda kw: alert_app(AlertServiceSettings(**kw)),
    "terminal-service": lambda kw: terminal_app(TerminalServiceSettings(**kw)),
}
METHODS = ("get", "post", "put", "patch", "delete")

# The reviewed permission of every operation. A new route must be added here, deliberately.
REVIEWED: dict[str, str] = {
    "getAppServiceStatus": "status.view",
    "getBuildServiceStatus": "status.view",
    "getAlertServiceStatus": "status.view",
    "getTerminalServiceStatus": "status.view",
    "createNamespace": "namespace.create",
    "listNamespaces": "namespace.list",
    "getNamespace": "namespace.view",
    "updateNamespace": "namespace.update",
    "deleteNamespace": "namespace.delete",
    "listMembers": "member.view",
    "addMember": "member.manage",
    "changeMemberRole": "member.manage",
    "removeMember": "member.manage",
    "createApp": "app.create",
    "listApps": "app.view",
    "getApp": "app.view",
    "updateApp": "app.update",
    "deleteApp": "app.delete",
    "createDeployment": "deploy.create",
    "listDeployments": "deploy.view",
    "getDeployment": "deploy.view",
    "followDeployment": "deploy.view",
    "cancelDeployment": "deploy.create",
    "approveDeployment": "deploy.approve",
    "rollbackApp": "app.rollback",
    "changeRelease": "app.config",
    "restartApp": "deploy.create",
    "scaleApp": "app.scale",
    "updateAppSettings": "app.update",
    "listReleases": "deploy.view",
    "getRelease": "deploy.view",
    "diffReleases": "deploy.view",
    "getAppStatus": "app.view",
    "listPods": "pod.view",
    "deletePod": "pod.delete",
    "listKubeEvents": "app.view",
    "importApps": "app.create",
    "getNamespaceStats": "namespace.view",
    "getAppStats": "app.view",
    "createCluster": "cluster.manage",
    "listClusters": "cluster.manage",
    "checkCluster": "cluster.manage",
    "deleteCluster": "cluster.manage",
    "listNotifications": "inbox.view",
    "countUnreadNotifications": "inbox.view",
    "markNotificationRead": "inbox.manage",
    "markNotificationUnread": "inbox.manage",
    "markAllNotificationsRead": "inbox.manage",
    "listInboxRules": "inbox.view",
    "createInboxRule": "inbox.manage",
    "getInboxRule": "inbox.view",
    "updateInboxRule": "inbox.manage",
    "deleteInboxRule": "inbox.manage",
    "publishAnnouncement": "announcement.manage",
    "listAnnouncements": "announcement.view",
    "getAnnouncement": "announcement.view",
    "withdrawAnnouncement": "announcement.withdraw",
    "listEvents": "event.view",
    "followEvents": "event.view",
}


@dataclass(frozen=True)
class Caller:
    label: str
    role: Role | None = None  # in team-a
    admin: bool = False
    scope: TokenScope | None = None
    anonymous: bool = False
    outsider: bool = False  # owner of team-b only


CALLERS = [
    Caller("anonymous", anonymous=True),
    Caller("viewer", Role.viewer),
    Caller("developer", Role.developer),
    Caller("maintainer", Role.maintainer),
    Caller("owner", Role.owner),
    Caller("other-namespace-owner", outsider=True),
    Caller("admin", admin=True),
    Caller("owner-read-token", Role.owner, scope=TokenScope.read),
]


def expected(action: str, caller: Caller) -> int | None:
    """The status an authorisation failure must produce, or None when the call must get through."""
    if action == "public":
        return None
    if caller.anonymous:
        return 401
    rule = PERMISSIONS[Action(action)]
    if caller.scope is not None and SCOPE_RANK[caller.scope] < SCOPE_RANK[rule.scope]:
        return 403
    if rule.level == "authenticated":
        return None
    if rule.level == "admin":
        return None if caller.admin else 403
    if caller.admin:
        return None
    if caller.role is None:
        return 404
    assert isinstance(rule.level, Role)
    return None if ROLE_RANK[caller.role] >= ROLE_RANK[rule.level] else 403


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    paths = app.openapi()["paths"]
    return [(m, p, op) for p, ops in paths.items() for m, op in ops.items() if m in METHODS]


def concrete(path: str, member_id: uuid.UUID) -> str:
    unknown = uuid.UUID(int=7)
    return path.format(
        namespace="team-a",
        app="web",
        user_id=member_id,
        pod="web-1",
        deployment_id=unknown,
        number=1,
        cluster_id=unknown,
        token_id=unknown,
        notification_id=1,
        rule_id=unknown,
        announcement_id=unknown,
    )


def namespace_query(action: str, operation: dict[str, Any]) -> dict[str, str]:
    """A namespaced action whose namespace is a query parameter (`?namespace=`) is asked about team-a."""
    level = PERMISSIONS[Action(action)].level if action != "public" else None
    takes = any(p["in"] == "query" and p["name"] == "namespace" for p in operation.get("parameters", []))
    return {"namespace": "team-a"} if takes and isinstance(level, Role) else {}


class World:
    """team-a with one app and a member of each role; team-b owned by an outsider; a platform admin."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}

    async def build(self, session: AsyncSession) -> None:
        for name in ("team-a", "team-b"):
            session.add(Namespace(name=name, status=NamespaceStatus.active))
        await session.flush()
        team_a = await session.scalar(Namespace.__table__.select().where(Namespace.name == "team-a"))
        assert team_a is not None
        session.add(App(namespace_id=team_a, name="web", git_url="https://g.example/web.git", ports=[]))
        self.users["admin"] = await make_user(session, "admin@example.com", is_admin=True)
        for role in Role:
            self.users[role.value] = user = await make_user(session, f"{role.value}@example.com")
            await make_member(session, user, "team-a", role)
        self.users["outsider"] = outsider = await make_user(session, "outsider@example.com")
        await make_member(session, outsider, "team-b", Role.owner)
        await session.flush()

    def headers(self, minter: Minter, caller: Caller, service: str) -> dict[str, str]:
        if caller.anonymous:
            return {}
        user = self.users["admin" if caller.admin else "outsider" if caller.outsider else str(caller.role)]
        return minter.identity(user, service, scope=caller.scope, token_id=None)


@pytest.fixture
async def world(session: AsyncSession) -> World:
    world = World()
    await world.build(session)
    return world


EVENT_STREAM = "text/event-stream"


@dataclass
class Served:
    name: str
    app: FastAPI
    client: httpx.AsyncClient
    state: dict[str, Any]  # the lifespan state its requests get (for streams, called without httpx)

    async def call(
        self, method: str, url: str, operation: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, str]:
        """The status and body; of a stream that started, the status only."""
        body: dict[str, Any] | None = {} if method in ("post", "put", "patch") else None
        if EVENT_STREAM in operation["responses"].get("200", {}).get("content", {}):
            return await stream_status(WithState(self.app, self.state), url, headers)
        params = namespace_query(operation["x-kepler-permission"], operation)
        response = await self.client.request(method, url, json=body, params=params, headers=headers)
        return response.status_code, response.text


async def stream_status(app: ASGIApp, url: str, headers: dict[str, str]) -> tuple[int, str]:
    """A GET that may start an endless stream (httpx's ASGI transport would wait for its end): the
    client leaves once a 200 has started, and reads the whole body of anything else."""
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    sent_request = False
    body = b""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal body
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
            if message["status"] == 200:
                done.set_result(200)
        elif message["type"] == "http.response.body" and statuses[0] != 200:
            body += message.get("body", b"")
            if not message.get("more_body", False):
                done.set_result(statuses[0])

    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [
            (b"host", b"testserver"),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
        "client": ("127.0.0.1", 123),
        "server": ("testserver", 80),
        "root_path": "",
    }
    await app(scope, receive, send)
    return done.result(), body.decode(errors="replace")


@pytest.fixture(params=list(SERVICES))
async def service(
    request: pytest.FixtureRequest,
    settings_overrides: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
) -> AsyncIterator[Served]:
    name: str = request.param
    app = SERVICES[name](settings_overrides)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def keep_state(final: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        state.update(final)
        yield {}

    async with service_client(app, sessionmaker=sessionmaker, arq=arq, extra=keep_state) as client:
        yield Served(name, app, client, state)


def test_every_operation_declares_the_reviewed_permission(settings_overrides: dict[str, Any]) -> None:
    declared = {
        operation["operationId"]: operation.get("x-kepler-permission")
        for factory in SERVICES.values()
        for _, _, operation in operations(factory(settings_overrides))
    }
    assert declared == REVIEWED


async def test_authorization_matrix(
    service: Served,
    world: World,
    minter: Minter,
    db_connection: AsyncConnection,
) -> None:
    failures: list[str] = []
    for method, path, operation in operations(service.app):
        for caller in CALLERS:
            savepoint = await db_connection.begin_nested()  # each call sees the same world
            url = concrete(path, world.users["viewer"].id)
            headers = world.headers(minter, caller, service.name)
            got, text = await service.call(method, url, operation, headers)
            await savepoint.rollback()
            want = expected(operation["x-kepler-permission"], caller)
            denied = got in (401, 403) or (got == 404 and "does not exist" in text and "Namespace" in text)
            if (want is None and denied) or (want is not None and got != want):
                failures.append(
                    f"{method.upper()} {path} as {caller.label}: want {want or 'allowed'}, got {got}"
                )
    assert failures == []


# --- the gateway's own operations: callers present access tokens or API tokens, as clients do ---------

GATEWAY_REVIEWED: dict[str, str] = {
    "getApiGatewayStatus": "status.view",
    "getPlatformStatus": "status.view",
    "login": "public",
    "refreshTokens": "public",
    "logout": "account.view",
    "oidcLogin": "public",
    "oidcCallback": "public",
    "getMe": "account.view",
    "changePassword": "account.manage",
    "createApiToken": "account.manage",
    "listApiTokens": "account.view",
    "revokeApiToken": "account.manage",
    "listUsers": "user.manage",
    "createUser": "user.manage",
    "updateUser": "user.manage",
    "listAuditEvents": "audit.view",
    "getJwks": "public",
}
READ_TOKEN = "kpl_matrix-read-scoped-token-0000000000000000000000"


@pytest.fixture
async def gateway(
    settings_overrides: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    world: World,
    minter: Minter,
    session: AsyncSession,
) -> AsyncIterator[httpx.AsyncClient]:
    owner = world.users["owner"]
    session.add(
        ApiToken(
            user_id=owner.id,
            name="ci",
            prefix=READ_TOKEN[:12],
            token_hash=token_digest(READ_TOKEN),
            scope=TokenScope.read,
        )
    )
    await session.flush()
    settings = GatewaySettings(**{**settings_overrides, "secret_key": TEST_SECRET})
    limits = AuthSettings(login_attempts_per_ip=10**6, token_requests_per_ip=10**6)
    async with gateway_client(settings, sessionmaker, arq, limits) as client:
        yield client


def control(settings_overrides: dict[str, Any]) -> FastAPI:
    """The gateway's own FastAPI app (its routes, not the ones it proxies)."""
    app = create_gateway(GatewaySettings(**settings_overrides))
    assert isinstance(app, Gateway)
    assert isinstance(app.control, FastAPI)
    return app.control


def gateway_headers(world: World, minter: Minter, caller: Caller) -> dict[str, str]:
    if caller.anonymous:
        return {}
    if caller.scope is not None:
        return {"authorization": f"Bearer {READ_TOKEN}"}
    user = world.users["admin" if caller.admin else "outsider" if caller.outsider else str(caller.role)]
    return minter.access(user)


def test_gateway_declares_the_reviewed_permissions(settings_overrides: dict[str, Any]) -> None:
    declared = {
        op["operationId"]: op.get("x-kepler-permission")
        for _, _, op in operations(control(settings_overrides))
    }
    assert declared == GATEWAY_REVIEWED


async def test_gateway_authorization_matrix(
    gateway: httpx.AsyncClient,
    world: World,
    minter: Minter,
    db_connection: AsyncConnection,
    settings_overrides: dict[str, Any],
) -> None:
    failures: list[str] = []
    for method, path, operation in operations(control(settings_overrides)):
        action = operation["x-kepler-permission"]
        namespaced = action != "public" and PERMISSIONS[Action(action)].namespaced
        url = concrete(path, world.users["viewer"].id)
        params = {"namespace": "team-a"} if namespaced and "{namespace}" not in path else {}
        for caller in CALLERS:
            savepoint = await db_connection.begin_nested()
            body: dict[str, Any] | None = {} if method in ("post", "put", "patch") else None
            response = await gateway.request(
                method, url, json=body, params=params, headers=gateway_headers(world, minter, caller)
            )
            await savepoint.rollback()
            want, got = expected(action, caller), response.status_code
            denied = got in (401, 403) or (
                got == 404 and "Namespace" in response.text and "does not exist" in response.text
            )
            if (want is None and denied) or (want is not None and got != want):
                failures.append(
                    f"{method.upper()} {path} as {caller.label}: want {want or 'allowed'}, got {got}"
                )
    assert failures == []
