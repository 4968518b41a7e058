"""Drive the whole gateway in-process over a test's transaction (for this package's tests and the
cross-service authorisation matrix)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from kepler_gateway.app import Gateway, create_app
from kepler_gateway.identity.settings import AuthSettings
from kepler_gateway.identity.wiring import identity_resources
from kepler_gateway.settings import GatewaySettings
from kepler_kit.contracts import GATEWAY
from kepler_kit.testing.services import service_client

Client = httpx.AsyncClient


@contextlib.asynccontextmanager
async def gateway_client(
    settings: GatewaySettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    auth: AuthSettings,
    base_url: str = "http://testserver",
    peer: tuple[str, int] = ("127.0.0.1", 123),
) -> AsyncIterator[Client]:
    """The whole gateway (proxy included) with its lifespan, over the test's transaction (the kit's
    `service_client`, plus the gateway's identity resources); requests come from the address `peer`."""
    app = create_app(settings)
    assert isinstance(app, Gateway)

    def identity(state: dict[str, Any]) -> AbstractAsyncContextManager[dict[str, Any]]:
        return identity_resources(settings, state, auth)

    async with service_client(
        app,
        lifespan_of=app.control,
        base_url=base_url,
        peer=peer,
        extra=identity,
        service=GATEWAY,
        sessionmaker=sessionmaker,
        arq=arq,
    ) as client:
        yield client


class Relay:
    """A TCP relay in front of a real server (Postgres, Redis) that a test can cut: open connections
    drop and new ones are refused, as when the server goes down after the gateway started."""

    def __init__(self, target: str) -> None:
        url = URL(target)
        self.host, self.port = url.host or "127.0.0.1", url.port or 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()
