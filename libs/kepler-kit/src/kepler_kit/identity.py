"""Who is calling, as every service sees it.

The gateway authenticates the client and forwards a short-lived identity token signed for exactly one
service (`X-Kepler-Identity`); a service also accepts a client's access token presented to it directly.
Services only ever depend on `CurrentPrincipal` (who) and `require(action)` (may they).
"""

import uuid
from typing import Annotated, NamedTuple, Protocol

from fastapi import Depends, Request
from starlette.types import Scope

from kepler_db import TokenScope

IDENTITY_HEADER = "x-kepler-identity"
PRINCIPAL_KEY = "kepler.principal"  # the request's principal, once authenticated (in the ASGI scope)


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


def client_address(scope: Scope, forwarded: str | None) -> str | None:
    """The gateway sets X-Forwarded-For (`forwarded`); services only ever hear from it or from loopback."""
    if forwarded:
        return forwarded.split(",")[0].strip() or None
    client = scope.get("client")
    return client[0] if client else None


def client_ip(request: Request) -> str | None:
    return client_address(request.scope, request.headers.get("x-forwarded-for"))


def anonymous(request: Request) -> Principal:
    return Principal(user_id=None, name="anonymous", client_ip=client_ip(request))


class Authenticator(Protocol):
    async def authenticate(self, request: Request) -> Principal: ...


async def current_principal(request: Request) -> Principal:
    """Authenticates once per request, however many dependencies ask."""
    known: Principal | None = request.scope.get(PRINCIPAL_KEY)
    if known is None:
        authenticator: Authenticator | None = request.scope.get("state", {}).get("authenticator")
        known = await authenticator.authenticate(request) if authenticator else anonymous(request)
        request.scope[PRINCIPAL_KEY] = known
    return known


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
