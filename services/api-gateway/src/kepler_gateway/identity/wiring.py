"""How identity plugs into the gateway: its lifespan resources, its routes, and the proxy's authenticator."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.types import Scope

from kepler_gateway.auth import Identity
from kepler_gateway.identity import api, oidc
from kepler_gateway.identity.authenticate import GatewayAuth
from kepler_gateway.identity.settings import AuthSettings
from kepler_gateway.routing import Route
from kepler_kit.crypto import SecretBox
from kepler_kit.settings import KeplerSettings
from kepler_kit.tokens import KeyRing, TokenIssuer, TokenVerifier

ROUTERS = [api.auth, oidc.router, api.account, api.users, api.audit, api.keys]
SIGNING_KEYS = "signing-keys"


@asynccontextmanager
async def identity_resources(
    settings: KeplerSettings, state: dict[str, Any], auth_settings: AuthSettings | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The gateway alone holds the private signing key; it makes the first one on its first start."""
    auth_settings = auth_settings or AuthSettings()

    keyring = KeyRing(state["sessionmaker"], SecretBox(settings.secret_key.get_secret_value(), SIGNING_KEYS))
    await keyring.ensure_signing_key()
    verifier, issuer = TokenVerifier(keyring), TokenIssuer(keyring)
    gateway_auth = GatewayAuth(
        verifier=verifier,
        access=state["access_control"],
        issuer=issuer,
        sessionmaker=state["sessionmaker"],
        settings=auth_settings,
    )
    yield {
        "keyring": keyring,
        "verifier": verifier,
        "issuer": issuer,
        "auth_settings": auth_settings,
        "oidc": oidc.oidc_client(auth_settings),
        "gateway_auth": gateway_auth,
        "authenticator": gateway_auth,  # the kit's seam, for the gateway's own routes
    }


class StateAuthenticator:
    """The proxy's authenticator: the lifespan's GatewayAuth, found in the request's state."""

    async def authenticate(self, scope: Scope, route: Route) -> Identity:
        gateway_auth: GatewayAuth = scope["state"]["gateway_auth"]
        return await gateway_auth.forward(scope, route.service.value)
