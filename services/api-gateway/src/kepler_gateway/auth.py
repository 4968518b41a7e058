"""The seam where authentication plugs in (issue #3): one call per proxied request or WebSocket.

An authenticator either rejects the request by raising a `KeplerError` (typically `Unauthorized`,
rendered as a 401 problem) or returns the headers that tell the upstream who is calling. Those
headers replace any header of the same name the client sent, so a caller cannot forge them — which
means an authenticator should always return its identity headers, with an empty value for anonymous.
"""

from collections.abc import Sequence
from typing import Protocol

from starlette.types import Scope

from kepler_gateway.routing import Route

Identity = Sequence[tuple[str, str]]


class UpstreamAuthenticator(Protocol):
    """Authenticates a proxied request and returns the identity headers its upstream gets."""

    async def authenticate(self, scope: Scope, route: Route) -> Identity: ...


class AllowAll:
    """Until issue #3: everyone may call everything, and no identity is forwarded."""

    async def authenticate(self, scope: Scope, route: Route) -> Identity:
        return ()
