"""Who is calling a service: the gateway's identity token for it, or a client's access token presented
directly, resolved once per credential to a live `Principal`."""

from fastapi import Request
from starlette.types import Scope

from kepler_kit.access.cache import AccessControl, PrincipalCache, SingleFlight
from kepler_kit.access.grants import GRANTS_KEY, PER_CREDENTIAL, Access, Grants, granted_before
from kepler_kit.errors import InvalidToken
from kepler_kit.identity import IDENTITY_HEADER, PRINCIPAL_KEY, Principal, anonymous, client_address
from kepler_kit.permissions import Action
from kepler_kit.tokens import ACCESS_AUDIENCE, Claims, TokenVerifier, identity_audience

_IDENTITY_HEADER = IDENTITY_HEADER.encode("latin-1")


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
            if len(self.at) >= PER_CREDENTIAL:
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
        scope[GRANTS_KEY] = resolved.grants
        return resolved.caller(scope, forwarded)

    def granted(self, scope: Scope, action: Action, namespace: str | None) -> Access | None:
        """The hot path, awaiting nothing: the caller's `Access` when this credential was already
        granted `action` in `namespace` (same access epoch, within the TTL), else None (`authorize`)."""
        identity, authorization, forwarded = _credentials(scope["headers"])
        token = identity or authorization
        resolved: _Resolved | None = self._known.get(token) if token else None
        if resolved is None:
            return None
        granted = granted_before(resolved.grants, action, namespace)
        if granted is None:
            return None
        principal = scope[PRINCIPAL_KEY] = resolved.caller(scope, forwarded)
        scope[GRANTS_KEY] = resolved.grants
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
        if name == _IDENTITY_HEADER:
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
