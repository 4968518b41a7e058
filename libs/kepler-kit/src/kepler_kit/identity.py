"""Who is calling, as every service sees it.

The gateway authenticates the client and forwards a short-lived identity token signed for exactly one
service (`X-Kepler-Identity`); a service also accepts a client's access token presented to it directly.
Services only ever depend on `CurrentPrincipal` (who) and `require(action)` (may they).
"""

import functools
import ipaddress
import uuid
from collections.abc import Iterable
from typing import Annotated, NamedTuple, Protocol

from fastapi import Depends, Request
from starlette.types import Scope

from kepler_db import TokenScope

IDENTITY_HEADER = "x-kepler-identity"
PRINCIPAL_KEY = "kepler.principal"  # the request's principal, once authenticated (in the ASGI scope)
TRUSTED_PROXIES = "trusted_proxies"  # the lifespan state's `TrustedProxies`


class Principal(NamedTuple):
    """Who is calling. A NamedTuple: it is built on every request, and tuples build fastest."""

    user_id: uuid.UUID | None
    name: str
    token_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    scope: TokenScope | None = None
    token_namespace: str | None = None
    is_admin: bool = False
    client_ip: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    def at(self, client_ip: str | None) -> "Principal":
        """This principal, calling from `client_ip`."""
        return self._replace(client_ip=client_ip)


class TrustedProxies:
    """The peers whose `X-Forwarded-For` is believed (`KEPLER_TRUSTED_PROXIES`, CIDRs; none by default).

    The client is the rightmost address of the chain that is not a trusted proxy: each proxy appends the
    peer it saw, so everything left of the last untrusted hop was written by someone we cannot vouch for
    (the rule of uvicorn's `--forwarded-allow-ips` and Werkzeug's `ProxyFix`)."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks)
        self.trusts = functools.lru_cache(maxsize=4096)(self._trusts)

    def _trusts(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, forwarded: str | None) -> str | None:
        if not forwarded or not self.networks or peer is None or not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded.split(",")]
        for hop in reversed(hops):
            if hop and not self.trusts(hop):
                return hop
        return hops[0] or peer  # every hop is a proxy of ours: the first one is the client


NO_PROXIES = TrustedProxies()


def client_address(scope: Scope, forwarded: str | None) -> str | None:
    """Who sent the request: the peer, or what trusted proxies (the lifespan's) say in `forwarded`."""
    client = scope.get("client")
    peer = client[0] if client else None
    if not forwarded:
        return peer
    trusted: TrustedProxies = scope.get("state", {}).get(TRUSTED_PROXIES, NO_PROXIES)
    return trusted.client(peer, forwarded)


def client_ip(request: Request) -> str | None:
    forwarded = request.headers.getlist("x-forwarded-for")
    return client_address(request.scope, ", ".join(forwarded) if forwarded else None)


def anonymous(request: Request) -> Principal:
    return Principal(user_id=None, name="anonymous", client_ip=client_ip(request))


class PrincipalAuthenticator(Protocol):
    """Turns a request into the `Principal` calling (the lifespan state's `authenticator`)."""

    async def authenticate(self, request: Request) -> Principal: ...


async def current_principal(request: Request) -> Principal:
    """Authenticates once per request, however many dependencies ask."""
    known: Principal | None = request.scope.get(PRINCIPAL_KEY)
    if known is None:
        authenticator: PrincipalAuthenticator | None = request.scope.get("state", {}).get("authenticator")
        known = await authenticator.authenticate(request) if authenticator else anonymous(request)
        request.scope[PRINCIPAL_KEY] = known
    return known


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
