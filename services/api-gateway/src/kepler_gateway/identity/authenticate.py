"""Authentication at the gateway: who the client is, and the identity each upstream will trust.

The hot path stays cheap: verified access tokens, API-token lookups and minted identity tokens are all
cached, and the live checks (user disabled, session ended, token revoked) hit the access-control cache
that Redis invalidations keep current.
"""

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

from kepler_db import ApiToken, TokenScope
from kepler_gateway.identity import repository
from kepler_gateway.identity.settings import AuthSettings
from kepler_kit.access import AccessControl, PrincipalCache, SingleFlight, principal_for
from kepler_kit.crypto import token_digest
from kepler_kit.errors import InvalidToken
from kepler_kit.identity import IDENTITY_HEADER, Principal, client_address, client_ip
from kepler_kit.tokens import ACCESS_AUDIENCE, Claims, TokenIssuer, TokenVerifier, identity_audience

API_TOKEN_PREFIX = "kpl_"  # noqa: S105  (a prefix, not a secret)
_ANONYMOUS = [(IDENTITY_HEADER, ""), ("authorization", "")]  # no identity, and no credentials upstream
TOUCH_EVERY = 60.0  # seconds between `last_used_at` writes for one token


@dataclass(frozen=True)
class _TokenFacts:
    """The parts of an API token that never change; revocation is checked live, expiry here."""

    id: uuid.UUID
    user_id: uuid.UUID
    scope: TokenScope
    namespace: str | None
    expires_at: datetime | None


class GatewayAuth:
    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        access: AccessControl,
        issuer: TokenIssuer,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: AuthSettings,
    ) -> None:
        self.verifier, self.access, self.issuer = verifier, access, issuer
        self._sessionmaker, self._settings = sessionmaker, settings
        self._tokens: dict[str, _TokenFacts | None] = {}
        self._minted: dict[tuple[str, str], tuple[str, float]] = {}
        self._touched: dict[uuid.UUID, float] = {}
        self._forwarded = PrincipalCache(access)
        self._forwarding = SingleFlight()

    async def authenticate(self, request: Request) -> Principal:
        """The kit's Authenticator protocol, for the gateway's own endpoints."""
        ip = client_ip(request)
        principal = await self.principal(request.headers.get("authorization"), ip)
        return principal or Principal(user_id=None, name="anonymous", client_ip=ip)

    async def principal(self, authorization: str | None, ip: str | None) -> Principal | None:
        resolved = await self._resolve(authorization, ip)
        return resolved[0] if resolved else None

    async def _resolve(self, authorization: str | None, ip: str | None) -> tuple[Principal, float] | None:
        """The caller and until when (epoch seconds) their credential is valid."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if token.startswith(API_TOKEN_PREFIX):
            return await self._api_token_principal(token, ip)
        claims = await self.verifier.verify(token, ACCESS_AUDIENCE, "access")
        return _with_ip(await principal_for(self.access, claims), ip), float(claims.exp)

    async def _api_token_principal(self, token: str, ip: str | None) -> tuple[Principal, float]:
        facts = await self._facts(token_digest(token))
        if facts is None or (facts.expires_at is not None and facts.expires_at <= datetime.now(UTC)):
            raise InvalidToken("The API token is unknown, revoked or expired.")
        claims = Claims(
            sub=facts.user_id,
            typ="api-token",
            aud=ACCESS_AUDIENCE,
            exp=0,
            tid=facts.id,
            scope=facts.scope,
            token_namespace=facts.namespace,
        )
        principal = await principal_for(self.access, claims)
        await self._touch(facts.id)
        until = facts.expires_at.timestamp() if facts.expires_at else time.time() + 86400
        return _with_ip(principal, ip), until

    async def _facts(self, digest: str) -> _TokenFacts | None:
        if digest in self._tokens:
            return self._tokens[digest]
        async with self._sessionmaker() as session:
            row = await repository.api_token_by_digest(session, digest)
        facts = None
        if row is not None:
            token, namespace = row
            facts = _TokenFacts(token.id, token.user_id, token.scope, namespace, token.expires_at)
        if len(self._tokens) > 50_000:
            self._tokens.clear()
        self._tokens[digest] = facts
        return facts

    async def _touch(self, token_id: uuid.UUID) -> None:
        """Record use at most once a minute per token: a write per request would cost more than it."""
        now = time.monotonic()
        if now - self._touched.get(token_id, 0.0) < TOUCH_EVERY:
            return
        self._touched[token_id] = now
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=datetime.now(UTC))
            )

    def identity_token(self, principal: Principal, service: str) -> str:
        """A short-lived token for exactly one service; reused while it has most of its life left."""
        key = (
            f"{principal.user_id}:{principal.session_id}:{principal.token_id}:{principal.client_ip}",
            service,
        )
        now = time.time()
        cached = self._minted.get(key)
        if cached is not None and cached[1] - now > self._settings.identity_token_seconds / 3:
            return cached[0]
        exp = int(now) + self._settings.identity_token_seconds
        token = self.issuer.issue(
            Claims(
                sub=principal.user_id,  # type: ignore[arg-type]
                typ="identity",
                aud=identity_audience(service),
                exp=exp,
                name=principal.name,
                sid=principal.session_id,
                tid=principal.token_id,
                scope=principal.scope,
                token_namespace=principal.token_namespace,
                client_ip=principal.client_ip,
            )
        )
        if len(self._minted) > 50_000:
            self._minted.clear()
        self._minted[key] = (token, float(exp))
        return token

    async def forward(self, scope: Scope, service: str) -> list[tuple[str, str]]:
        """Headers for the upstream: the identity (empty if anonymous) instead of the client's credentials."""
        authorization, forwarded = _credentials(scope["headers"])
        if not authorization:
            return _ANONYMOUS
        ip = client_address(scope, forwarded)
        key = (authorization, service, ip)
        known: list[tuple[str, str]] | None = self._forwarded.get(key)
        if known is not None:
            return known
        return await self._forwarding.run(key, lambda: self._forward_headers(authorization, service, ip))

    async def _forward_headers(
        self, authorization: str, service: str, ip: str | None
    ) -> list[tuple[str, str]]:
        """Worked out once for all the requests in flight with this credential (see `SingleFlight`)."""
        epoch = self.access.epoch
        resolved = await self._resolve(authorization, ip)
        if resolved is None:
            return _ANONYMOUS
        identity = self.identity_token(resolved[0], service)
        headers = [(IDENTITY_HEADER, identity), ("authorization", "")]
        reuse_until = min(resolved[1], time.time() + self._settings.identity_token_seconds * 2 / 3)
        self._forwarded.put((authorization, service, ip), headers, reuse_until, epoch)
        return headers


def _credentials(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """Authorization and X-Forwarded-For (all of its lines), in one pass over the raw headers."""
    authorization = forwarded = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            text = value.decode("latin-1")
            forwarded = f"{forwarded}, {text}" if forwarded else text
    return authorization, forwarded


def _with_ip(principal: Principal, ip: str | None) -> Principal:
    return principal.at(ip)
