"""Drive the whole gateway in-process over a test's transaction (for this package's tests and the
cross-service authorisation matrix)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_gateway.app import Gateway, create_app
from kepler_gateway.identity.settings import AuthSettings
from kepler_gateway.identity.wiring import identity_resources
from kepler_gateway.settings import GatewaySettings
from kepler_kit.service_app import security_state
from kepler_kit.testing.services import WithState

Client = httpx.AsyncClient


@contextlib.asynccontextmanager
async def gateway_client(
    settings: GatewaySettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    auth: AuthSettings,
    base_url: str = "http://testserver",
) -> AsyncIterator[Client]:
    """The whole gateway (proxy included) with its lifespan, over the test's transaction."""
    app = create_app(settings)
    assert isinstance(app, Gateway)
    control = app.control
    async with control.router.lifespan_context(control) as lifespan_state:  # type: ignore[attr-defined]
        state = {**lifespan_state, "sessionmaker": sessionmaker, "arq": arq}
        state.update(security_state("api-gateway", sessionmaker))
        async with identity_resources(settings, state, auth) as identity:
            state.update(identity)
            listener = asyncio.create_task(state["access_control"].listen(arq))
            transport = httpx.ASGITransport(app=WithState(app, state), raise_app_exceptions=False)
            try:
                async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                    yield client
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
