"""A client's address, from the gateway's socket to app-service's audit row (issue #8 item 15).

The gateway runs in-process; app-service is a real HTTP server behind it (the proxy speaks HTTP/1.1 to
its upstreams), both over the test's transaction. What the client writes in X-Forwarded-For must not
reach the row: app-service takes the address from the identity the gateway signed.
"""

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp

from kepler_app_service.app import create_app as app_service
from kepler_app_service.settings import AppServiceSettings
from kepler_db import AuditEvent
from kepler_gateway.identity.settings import AuthSettings
from kepler_gateway.settings import GatewaySettings
from kepler_gateway.testing import gateway_client
from kepler_kit.service_app import security_state
from kepler_kit.testing.identities import TEST_SECRET, Minter, make_user
from kepler_kit.testing.services import WithState


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # Not even uvicorn's own X-Forwarded-For handling: the address must come from the signed identity.
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, log_level="warning", proxy_headers=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # start-up failed: say why
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def app_service_url(
    overrides: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession], arq: ArqRedis
) -> AsyncIterator[str]:
    app = app_service(AppServiceSettings(**overrides))
    async with app.router.lifespan_context(app) as started:
        state = {**(started or {}), "sessionmaker": sessionmaker, "arq": arq}
        state.update(security_state("app-service", sessionmaker))
        async with serving(WithState(app, state)) as url:
            yield url


async def test_app_service_audits_the_address_the_gateway_saw(
    settings_overrides: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    minter: Minter,
    session: AsyncSession,
) -> None:
    admin = await make_user(session, f"admin-{secrets.token_hex(3)}@example.com", is_admin=True)
    peer = "203.0.113.77"
    async with app_service_url(settings_overrides, sessionmaker, arq) as upstream:
        settings = GatewaySettings(**settings_overrides, secret_key=TEST_SECRET, app_service_url=upstream)
        async with gateway_client(settings, sessionmaker, arq, AuthSettings(), peer=(peer, 5000)) as gateway:
            response = await gateway.post(
                "/api/v1/namespaces",
                json={"name": "team-e2e"},
                headers={
                    **minter.access(admin),
                    "x-forwarded-for": "6.6.6.6, 7.7.7.7",
                    "x-request-id": "e2e-ip",
                },
            )

    assert response.status_code == 201, response.text
    event = await session.scalar(select(AuditEvent).where(AuditEvent.request_id == "e2e-ip"))
    assert event is not None
    assert (event.service, str(event.client_ip)) == ("app-service", peer)
