"""Live authorisation: users, memberships, sessions and API tokens read from Postgres, cached for a few
seconds, and evicted at once when another process publishes a change on Redis."""

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, _effective_route_context_var, request_response
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response
from starlette.types import Scope

from kepler_db import ApiToken, AuditOutcome, AuthSession, Membership, Namespace, Role, User
from kepler_kit.audit import record_audit_now
from kepler_kit.errors import Forbidden, InvalidToken, NotFound, Unauthorized
from kepler_kit.identity import (
    PRINCIPAL_KEY,
    Principal,
    anonymous,
    client_address,
    current_principal,
)
from kepler_kit.logging import get_logger
from kepler_kit.permissions import Action, Caller, Decision, decide
from kepler_kit.tokens import ACCESS_AUDIENCE, Claims, TokenVerifier, identity_audience

log = get_logger(__name__)
CHANNEL = "kepler:access"
T = TypeVar("T")


@dataclass(frozen=True)
class UserState:
    id: uuid.UUID
    email: str
    active: bool
    is_admin: bool


class NamespaceAccess(NamedTuple):
    exists: bool
    role: Role | None = None
    allow_exec: bool = False
    fresh_until: float = float("inf")  # monotonic; what is read from the database is trusted for the TTL


class Access(NamedTuple):
    """What a permitted endpoint gets: who, where, and with which role."""

    principal: Principal
    namespace: str | None
    role: Role | None


class SingleFlight:
    """Concurrent loads of one key share a single load. When a cached entry expires under load, one
    request reads the database (or verifies the token) and the others await its answer, instead of
    every request in flight doing the same work at once."""

    def __init__(self) -> None:
        self._running: dict[Any, asyncio.Future[Any]] = {}

    async def run(self, key: Any, load: Callable[[], Coroutine[Any, Any, T]]) -> T:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(load())  # a task of its own: one waiter leaving stops nothing
            self._running[key] = running
            running.add_done_callback(functools.partial(self._done, key))
        result: T = await asyncio.shield(running)
        return result

    def _done(self, key: Any, task: "asyncio.Future[Any]") -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # every waiter may have left: the outcome is not "never retrieved"

    def forget(self) -> None:
        """Loads already running finish for their waiters; later callers start afresh."""
        self._running.clear()


class AccessControl:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl: float = 5.0) -> None:
        self._sessionmaker, self.ttl = sessionmaker, ttl
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._loads = SingleFlight()
        self.epoch = 0  # bumped by every invalidation: caches built on top of this one compare it

    async def _cached(self, key: tuple[Any, ...], load: Callable[[AsyncSession], Awaitable[T]]) -> T:
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            value: T = hit[1]
            return value
        epoch = self.epoch

        async def fetch() -> T:
            async with self._sessionmaker() as session:
                fetched = await load(session)
            if self.epoch == epoch:  # else a change was published meanwhile: this answer may predate it
                self._cache[key] = (time.monotonic() + self.ttl, fetched)
            return fetched

        return await self._loads.run(key, fetch)

    async def user(self, user_id: uuid.UUID) -> UserState | None:
        async def load(session: AsyncSession) -> UserState | None:
            user = await session.get(User, user_id)
            if user is None:
                return None
            return UserState(user.id, user.email, user.disabled_at is None, user.is_admin)

        return await self._cached(("user", user_id), load)

    async def namespace_access(self, user_id: uuid.UUID, namespace: str) -> NamespaceAccess:
        async def load(session: AsyncSession) -> NamespaceAccess:
            query = (
                select(Namespace.allow_exec, Membership.role)
                .outerjoin(
                    Membership, (Membership.namespace_id == Namespace.id) & (Membership.user_id == user_id)
                )
                .where(Namespace.name == namespace)
            )
            row = (await session.execute(query)).first()
            until = time.monotonic() + self.ttl
            return NamespaceAccess(True, row.role, row.allow_exec, until) if row else NamespaceAccess(False)

        return await self._cached(("ns", namespace, user_id), load)

    async def session_active(self, session_id: uuid.UUID) -> bool:
        async def load(session: AsyncSession) -> bool:
            row = await session.get(AuthSession, session_id)
            return row is not None and row.revoked_at is None and row.expires_at > datetime.now(UTC)

        return await self._cached(("session", session_id), load)

    async def api_token_active(self, token_id: uuid.UUID) -> bool:
        async def load(session: AsyncSession) -> bool:
            query = select(func.count()).where(
                ApiToken.id == token_id,
                ApiToken.revoked_at.is_(None),
                (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > func.now()),
            )
            return bool(await session.scalar(query))

        return await self._cached(("token", token_id), load)

    def invalidate(self, message: str) -> None:
        """`user:<id>`, `ns:<name>`, `session:<id>`, `token:<id>` or `*`."""
        self.epoch += 1
        self._loads.forget()
        kind, _, ident = message.partition(":")
        if kind == "*":
            self._cache.clear()
            return
        for key in [k for k in self._cache if _matches(k, kind, ident)]:
            self._cache.pop(key, None)

    async def listen(self, redis: Redis) -> None:
        """Runs for the process's life; after a Redis outage it forgets all: it may have missed news."""
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.invalidate("*")
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.invalidate(message["data"].decode())
            except (RedisError, OSError):
                log.warning("access_invalidation_lost")
                await asyncio.sleep(1)


def _matches(key: tuple[Any, ...], kind: str, ident: str) -> bool:
    """Keys hold UUIDs (cheap to hash on the hot path); messages carry them as text."""
    if kind == "user":
        return (key[0] == "user" and str(key[1]) == ident) or (key[0] == "ns" and str(key[2]) == ident)
    if kind == "ns":
        return key[0] == "ns" and str(key[1]) == ident
    return key[0] == kind and str(key[1]) == ident


async def publish_access_change(redis: Redis, *messages: str) -> None:
    """Tell every process to forget what it cached; the TTL bounds staleness if Redis is down."""
    with contextlib.suppress(RedisError, OSError):
        for message in messages:
            await redis.publish(CHANNEL, message)


class PrincipalCache:
    """Resolved principals per credential, valid while nothing access-related changed (the epoch), for at
    most the access TTL, and never past the token's own expiry: the hot path becomes one dict lookup."""

    def __init__(self, access: AccessControl, size: int = 20_000) -> None:
        self.access, self._size = access, size
        self._entries: dict[Any, tuple[int, float, Any]] = {}

    def get(self, key: Any) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != self.access.epoch or entry[1] < time.monotonic():
            return None
        return entry[2]

    def put(self, key: Any, value: Any, expires_at: float, epoch: int) -> None:
        """`expires_at`: the credential's own expiry, in epoch seconds; `epoch`: the access epoch when
        `value` was worked out (an entry from before a change is never served)."""
        if len(self._entries) >= self._size:
            self._entries.clear()
        now = time.monotonic()
        until = min(now + self.access.ttl, now + expires_at - time.time())
        self._entries[key] = (epoch, until, value)


class Grant(NamedTuple):
    until: float  # monotonic: as long as what it was decided from is trusted
    role: Role | None


Grants = dict[tuple[Action, str | None], Grant]
_GRANTS = "kepler.grants"
_PER_CREDENTIAL = 256  # client addresses or (action, namespace) pairs remembered per credential


def _granted(grants: Grants, action: Action, namespace: str | None) -> Grant | None:
    granted = grants.get((action, namespace))
    return granted if granted is not None and granted.until > time.monotonic() else None


class _Resolved:
    """What one credential resolved to while nothing access-related changes: the principal (per client
    address) and the permissions already granted to it (`authorize` fills them in; denials are not kept,
    they are re-checked and audited every time)."""

    __slots__ = ("principal", "via_gateway", "at", "grants")

    def __init__(self, principal: Principal, *, via_gateway: bool = False) -> None:
        self.principal, self.via_gateway = principal, via_gateway
        self.at: dict[str | None, Principal] = {}
        self.grants: Grants = {}

    def caller(self, scope: Scope, forwarded: str | None) -> Principal:
        """The principal with its client address: signed by the gateway, or this request's own."""
        return self.principal if self.via_gateway else self.from_client(client_address(scope, forwarded))

    def from_client(self, client: str | None) -> Principal:
        principal = self.at.get(client)
        if principal is None:
            if len(self.at) >= _PER_CREDENTIAL:
                self.at.clear()
            principal = self.at[client] = self.principal.at(client)
        return principal


class ServiceAuthenticator:
    """A service trusts the gateway's identity token for it, or a client's access token; nothing else."""

    def __init__(self, service: str, verifier: TokenVerifier, access: AccessControl) -> None:
        self.audience, self.verifier, self.access = identity_audience(service), verifier, access
        self._known = PrincipalCache(access)
        self._resolving = SingleFlight()

    async def authenticate(self, request: Request) -> Principal:
        """Also leaves the credential's grants in the scope, for `authorize` to reuse."""
        scope = request.scope
        identity, authorization, forwarded = _credentials(scope["headers"])
        token, audience, typ = (
            (identity, self.audience, "identity") if identity else (authorization, ACCESS_AUDIENCE, "access")
        )
        if not token:
            return anonymous(request)
        resolved: _Resolved | None = self._known.get(token)
        if resolved is None:
            resolved = await self._resolving.run((token, typ), lambda: self._resolve(token, audience, typ))
        scope[_GRANTS] = resolved.grants
        return resolved.caller(scope, forwarded)

    def granted(self, scope: Scope, action: Action, namespace: str | None) -> Access | None:
        """The hot path, awaiting nothing: the caller's `Access` when this credential was already
        granted `action` in `namespace` (same access epoch, within the TTL), else None (`authorize`)."""
        identity, authorization, forwarded = _credentials(scope["headers"])
        token = identity or authorization
        resolved: _Resolved | None = self._known.get(token) if token else None
        if resolved is None:
            return None
        granted = _granted(resolved.grants, action, namespace)
        if granted is None:
            return None
        principal = scope[PRINCIPAL_KEY] = resolved.caller(scope, forwarded)
        scope[_GRANTS] = resolved.grants
        return Access(principal, namespace, granted.role)

    async def _resolve(self, token: str, audience: str, typ: str) -> _Resolved:
        epoch = self.access.epoch
        claims = await self.verifier.verify(token, audience, typ)
        principal = await principal_for(self.access, claims)
        # The gateway's identity token says where its client called from; only a token presented
        # directly leaves the address to this service's own peer (and its trusted proxies).
        resolved = _Resolved(principal.at(claims.client_ip), via_gateway=typ == "identity")
        self._known.put(token, resolved, claims.exp, epoch)
        return resolved


def _credentials(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None, str | None]:
    """The identity token, the bearer token and X-Forwarded-For, in one pass over the raw headers."""
    identity = bearer = forwarded = None
    for name, value in headers:
        if name == b"x-kepler-identity":
            identity = value.decode("latin-1") or None
        elif name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            bearer = token.strip() or None if scheme.lower() == "bearer" else None
        elif name == b"x-forwarded-for":
            text = value.decode("latin-1")
            forwarded = f"{forwarded}, {text}" if forwarded else text
    return identity, bearer, forwarded


async def principal_for(access: AccessControl, claims: Claims) -> Principal:
    """The live caller behind verified claims (no client address: callers add it with `Principal.at`)."""

    user = await access.user(claims.sub)
    if user is None or not user.active:
        raise InvalidToken("The account is disabled or no longer exists.")
    if claims.sid and not await access.session_active(claims.sid):
        raise InvalidToken("The session has ended; sign in again.")
    if claims.tid and not await access.api_token_active(claims.tid):
        raise InvalidToken("The API token was revoked or has expired.")
    return Principal(
        user_id=user.id,
        name=user.email,
        token_id=claims.tid,
        session_id=claims.sid,
        scope=claims.scope,
        token_namespace=claims.token_namespace,
        is_admin=user.is_admin,
    )


async def authorize(request: Request, action: Action) -> Access:
    """Checks `action` for the caller in the path's `{namespace}` (or `?namespace=`), live.

    A permission granted to the same credential for the same namespace while nothing access-related
    changed (and within the TTL) is reused; anything else is decided afresh."""
    principal = await current_principal(request)
    scope = request.scope
    namespace = _namespace(request)
    grants: Grants | None = scope.get(_GRANTS)
    granted = _granted(grants, action, namespace) if grants is not None else None
    if granted is not None:
        return Access(principal, namespace, granted.role)
    state = scope["state"]
    ns_access = NamespaceAccess(True)
    if namespace and principal.user_id is not None:
        ns_access = await state["access_control"].namespace_access(principal.user_id, namespace)
    caller = Caller(
        authenticated=principal.authenticated,
        is_admin=principal.is_admin,
        scope=principal.scope,
        token_namespace=principal.token_namespace,
        role=ns_access.role,
    )
    decision = decide(action, caller, namespace, ns_access.allow_exec)
    if decision is Decision.allow:
        if grants is not None:
            if len(grants) >= _PER_CREDENTIAL:
                grants.clear()
            grants[(action, namespace)] = Grant(ns_access.fresh_until, ns_access.role)
        return Access(principal, namespace, ns_access.role)

    await _audit_denial(state, principal, action, namespace, decision)
    raise _denial(decision, namespace)


def _namespace(request: Request) -> str | None:
    """The namespace a request acts in: the path's `{namespace}`, else `?namespace=`."""
    scope = request.scope
    namespace: str | None = scope.get("path_params", {}).get("namespace")
    if namespace is None and scope.get("query_string"):
        namespace = request.query_params.get("namespace")
    return namespace or None


def require(action: Action) -> Any:
    """Declares (and enforces) the permission of an endpoint: `access: Access = require(Action.app_view)`.

    Services built by the kit lift it out of FastAPI's dependency solving (see `install_permission_check`):
    the check then runs before the endpoint at a third of the cost, with the same result.
    """

    async def check(request: Request) -> Access:
        return await authorize(request, action)

    check.kepler_action = action.value  # type: ignore[attr-defined]
    return Depends(check)


_ACCESS: ContextVar[Access | None] = ContextVar("kepler_access", default=None)


def install_permission_check(route: APIRoute) -> None:
    """Runs the route's `require(...)` as a plain wrapper around its handler instead of a FastAPI
    sub-dependency (which costs ~10 µs of dependency solving per request here) and hands the `Access` to
    the endpoint parameter that declared it. Idempotent: routers are module singletons."""
    if getattr(route, "kepler_action", None) is not None:
        return
    action = _declared(route.dependant)
    route.kepler_action = action  # type: ignore[attr-defined]
    if action is None or action == "public":
        return
    build, checked = route.get_route_handler, Action(action)

    def get_route_handler() -> Callable[[Request], Coroutine[Any, Any, Response]]:
        # FastAPI builds a handler per inclusion, from the dependant it keeps for that inclusion
        # (it documents this as the moment integrations may adjust it): lift the check out of that one.
        context = _effective_route_context_var.get()
        _lift(
            context.dependant if context is not None and context.original_route is route else route.dependant
        )
        handler = build()

        async def guarded(request: Request) -> Response:
            authenticator = request.scope["state"].get("authenticator")
            access = (
                authenticator.granted(request.scope, checked, _namespace(request))
                if type(authenticator) is ServiceAuthenticator
                else None
            )
            token = _ACCESS.set(access or await authorize(request, checked))

            try:
                return await handler(request)
            finally:
                _ACCESS.reset(token)

        return guarded

    route.get_route_handler = get_route_handler  # type: ignore[method-assign]
    route.app = request_response(get_route_handler())


def _declaration(dependant: Dependant) -> Dependant | None:
    """The `require(...)`/`public()` sub-dependency among the route's own dependencies."""
    return next((d for d in dependant.dependencies if getattr(d.call, "kepler_action", None)), None)


def _declared(dependant: Dependant) -> str | None:
    found = _declaration(dependant)
    return str(found.call.kepler_action) if found is not None else None  # type: ignore[union-attr]


def _lift(dependant: Dependant) -> None:
    """Removes the permission dependency and passes the wrapper's `Access` to its parameter instead."""
    found = _declaration(dependant)
    if found is None:
        return  # already lifted
    dependant.dependencies.remove(found)
    endpoint, name = dependant.call, found.name
    if endpoint is None or name is None:  # router-level `dependencies=[require(...)]`: nothing to pass on
        return

    async def call(**values: Any) -> Any:
        return await endpoint(**values, **{name: _ACCESS.get()})

    dependant.call = call


def public() -> Any:
    """Marks an endpoint that needs no identity (login, webhooks that check their own secret)."""

    async def check() -> None:
        return None

    check.kepler_action = "public"  # type: ignore[attr-defined]
    return Depends(check)


def _denial(decision: Decision, namespace: str | None) -> Exception:
    if decision is Decision.unauthenticated:
        return Unauthorized("Sign in, or send an access or API token.")
    if decision is Decision.hidden:
        return NotFound(f"Namespace '{namespace}' does not exist.")
    return Forbidden("Your role in this namespace does not allow this.")


async def _audit_denial(
    state: Any, principal: Principal, action: Action, namespace: str | None, decision: Decision
) -> None:
    """Denials are audited in a transaction of their own: the request's will roll back."""
    if not principal.authenticated:
        return
    await record_audit_now(
        state["sessionmaker"],
        principal,
        service=state["service"],
        action=action.value,
        target_type="namespace" if namespace else "platform",
        target=namespace or "-",
        namespace=namespace,
        outcome=AuditOutcome.denied,
        detail={"decision": decision.value},
    )
