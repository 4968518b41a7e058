"""Real servers on loopback: four fake upstreams, gateways in front of them, and a raw HTTP client.

The fakes are small FastAPI apps served by uvicorn in this process, speaking like the real services
(kit operationIds, Problem responses, /healthz, /readyz). Streams are gated by asyncio events the
test controls, so "arrives before the next chunk is sent" is checked by ordering, not by timing.
"""

import asyncio
import gzip
import hashlib
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any, Literal

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Scope
from yarl import URL

from kepler_gateway.app import create_app
from kepler_gateway.auth import AllowAll, Identity
from kepler_gateway.routing import Route
from kepler_gateway.settings import GatewaySettings
from kepler_gateway.testing import Relay
from kepler_kit.db import create_engine, create_sessionmaker
from kepler_kit.errors import NotFound, Unauthorized, error_responses
from kepler_kit.health import Check, Readiness
from kepler_kit.service_app import operation_id
from kepler_kit.testing.identities import TEST_SECRET, make_minter, make_user

SPA_ORIGIN = "https://console.kepler.example"
RESPONSE_TIMEOUT = 10.0  # generous: a loaded CI machine must not turn a slow upload into a 504
SHORT_RESPONSE_TIMEOUT = 0.5  # the broken gateway's, so the 504 test waits little
Gate = tuple[str, asyncio.Event, asyncio.Event]  # (id, release: the test lets the stream go on, finished)
RawRequest = Callable[[bytes], Awaitable[tuple[int, dict[str, list[str]], bytes]]]


@asynccontextmanager
async def serve(app: ASGIApp, *, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """uvicorn on an ephemeral loopback port (bound first, so the port is known before start)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        log_level="warning",
        proxy_headers=False,  # as deployed: the gateway applies KEPLER_TRUSTED_PROXIES itself
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def dead_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def garbage_server() -> AsyncIterator[str]:
    """Accepts connections and answers with something that is not HTTP."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SPEAKING-GIBBERISH 42\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


# ---- fake upstreams ---------------------------------------------------------------------------------


class Registry:
    """State shared between a test and the fakes: stream gates, and close codes WebSockets received."""

    def __init__(self) -> None:
        self.gates: dict[str, tuple[asyncio.Event, asyncio.Event]] = {}
        self.ws_closes: dict[str, int] = {}
        self.release_slow = asyncio.Event()

    def gate(self, gate_id: str) -> tuple[asyncio.Event, asyncio.Event]:
        return self.gates.setdefault(gate_id, (asyncio.Event(), asyncio.Event()))


SANDBOX_CLUSTERS = Check(
    name="clusters", ok=True, detail="all reachable; SIMULATED (sandbox, nothing really runs): sandbox"
)


def fake_service(name: str, registry: Registry, checks: Sequence[Check] = ()) -> FastAPI:
    """A service skeleton: what every Kepler service has (status, health, readiness, Problem errors)."""
    app = FastAPI(title=name, generate_unique_id_function=operation_id)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Readiness:
        return Readiness(service=name, ready=True, checks=[Check(name="database", ok=True), *checks])

    @app.get(f"/api/v1/status/{name}", responses=error_responses(NotFound))
    async def get_status() -> dict[str, str]:
        return {"service": name}

    return app


def fake_app_service(registry: Registry) -> FastAPI:
    app = fake_service("app-service", registry, [SANDBOX_CLUSTERS])  # as app-service says on `make run`

    class Status(BaseModel):
        """Named like build-service's model but shaped differently: the merge must keep both."""

        namespaces: int

    @app.get("/api/v1/namespaces", tags=["namespaces"])
    async def list_namespaces() -> Status:
        return Status(namespaces=1)

    @app.api_route(
        "/api/v1/namespaces/{ns}/echo",
        methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    async def echo(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
            "body": body.decode(errors="replace"),
        }

    @app.get("/api/v1/namespaces/{ns}/events")
    async def events(gate: str) -> StreamingResponse:
        return StreamingResponse(
            _gated(registry, gate, b"event: first\ndata: 1\n\n", b"event: second\ndata: 2\n\n"),
            media_type="text/event-stream",
        )

    @app.get("/api/v1/namespaces/{ns}/slow")
    async def slow() -> dict[str, str]:
        await registry.release_slow.wait()
        return {"finally": "here"}

    @app.post("/api/v1/namespaces/{ns}/blob")
    async def digest(request: Request) -> dict[str, Any]:
        sha, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            sha.update(chunk)
            size += len(chunk)
        return {"size": size, "sha256": sha.hexdigest()}

    @app.get("/api/v1/namespaces/{ns}/blob")
    async def blob(size: Annotated[int, Query()]) -> Response:
        return Response(deterministic_bytes(size), media_type="application/octet-stream")

    @app.get("/api/v1/namespaces/{ns}/gzipped")
    async def gzipped() -> Response:
        body = gzip.compress(b'{"compressed": true}')
        return Response(body, media_type="application/json", headers={"content-encoding": "gzip"})

    @app.get("/api/v1/namespaces/{ns}/cookie")
    async def cookie(request: Request) -> JSONResponse:
        response = JSONResponse({"cookie": request.headers.get("cookie")})
        response.set_cookie("session", "alice-secret")
        return response

    return app


def fake_build_service(registry: Registry) -> FastAPI:
    app = fake_service("build-service", registry)

    class Status(BaseModel):
        queued: int
        running: int

    @app.get("/api/v1/namespaces/{ns}/apps/{app}/builds", tags=["builds"])
    async def list_builds(ns: str, app: str) -> Status:
        return Status(queued=0, running=0)

    @app.post("/api/v1/webhooks/github")
    async def receive_github_webhook() -> dict[str, str]:
        return {"accepted": "yes"}

    return app


def fake_alert_service(registry: Registry) -> FastAPI:
    app = fake_service("alert-service", registry)

    @app.get("/api/v1/namespaces/{ns}/alerts")
    async def list_alerts(ns: str) -> list[str]:
        return []

    return app


def fake_terminal_service(registry: Registry) -> FastAPI:
    app = fake_service("terminal-service", registry)

    @app.get("/api/v1/namespaces/{ns}/apps/{app}/pods/{pod}/logs")
    async def pod_logs(pod: str, follow: bool = False) -> StreamingResponse:
        return StreamingResponse(_gated(registry, pod, b"line 1\n", b"line 2\n"), media_type="text/plain")

    @app.websocket("/api/v1/namespaces/{ns}/apps/{app}/pods/{pod}/exec")
    async def exec_pod(websocket: WebSocket, pod: str) -> None:
        await _echo_session(websocket, pod, registry)

    return app


async def _gated(registry: Registry, gate_id: str, first: bytes, second: bytes) -> AsyncIterator[bytes]:
    release, finished = registry.gate(gate_id)
    try:
        yield first
        await release.wait()
        yield second
    finally:
        finished.set()


async def _echo_session(websocket: WebSocket, pod: str, registry: Registry) -> None:
    """Echoes frames; `whoami` answers with what the gateway forwarded; `close:<code>` closes with it."""
    if pod == "forbidden":
        await websocket.close(code=1008)
        return
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol="v4.channel.k8s.io" if "v4.channel.k8s.io" in offered else None)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                registry.ws_closes[pod] = message.get("code", 1000)
                registry.gate(pod)[1].set()
                return
            if (text := message.get("text")) is None:
                await websocket.send_bytes(message["bytes"])
            elif text == "whoami":
                await websocket.send_json(dict(websocket.headers.items()))
            elif text.startswith("close:"):
                await websocket.close(code=int(text.removeprefix("close:")), reason="bye")
                return
            else:
                await websocket.send_text(text)
    except WebSocketDisconnect as exc:
        registry.ws_closes[pod] = exc.code
        registry.gate(pod)[1].set()


def deterministic_bytes(size: int) -> bytes:
    block = hashlib.sha256(b"kepler").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


# ---- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry()


@pytest.fixture(scope="session")
async def upstreams(registry: Registry) -> AsyncIterator[dict[str, str]]:
    factories = {
        "app_service_url": fake_app_service,
        "build_service_url": fake_build_service,
        "alert_service_url": fake_alert_service,
        "terminal_service_url": fake_terminal_service,
    }
    async with AsyncExitStack() as stack:
        urls = {
            key: await stack.enter_async_context(serve(make(registry))) for key, make in factories.items()
        }
        stack.callback(registry.release_slow.set)  # exits first: lets the servers finish their requests
        yield urls


def gateway_settings(database_url: str, redis_url: str, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=TEST_SECRET,
        env="test",
        openapi_cache_seconds=0,
        **{"response_timeout": RESPONSE_TIMEOUT, "log_json": False, "log_level": "WARNING", **overrides},
    )


@pytest.fixture(scope="session")
def metrics_port() -> int:
    return dead_port()  # free now; the gateway binds it at start-up


@pytest.fixture(scope="session")
async def gateway_url(
    database_url: str, redis_url: str, upstreams: dict[str, str], metrics_port: int
) -> AsyncIterator[str]:
    """The proxy's mechanics, with authentication passing everyone (it has tests of its own), and a body
    limit above the large uploads that check streaming (the limit has tests of its own too)."""
    settings = gateway_settings(
        database_url,
        redis_url,
        cors_origins=[SPA_ORIGIN],
        max_body_bytes=64 * 1024 * 1024,
        metrics_port=metrics_port,
        **upstreams,
    )
    async with serve(create_app(settings, authenticator=AllowAll()), lifespan="on") as url:
        yield url


@pytest.fixture
async def logging_gateway_url(
    database_url: str, redis_url: str, upstreams: dict[str, str]
) -> AsyncIterator[str]:
    """Logging at INFO in JSON, as in production (the other gateways here log warnings only)."""
    settings = gateway_settings(database_url, redis_url, log_level="INFO", log_json=True, **upstreams)
    async with serve(create_app(settings, authenticator=AllowAll()), lifespan="on") as url:
        yield url


@pytest.fixture(scope="session")
async def broken_gateway_url(
    database_url: str, redis_url: str, upstreams: dict[str, str]
) -> AsyncIterator[str]:
    """app-service up; build-service speaks gibberish; alert- and terminal-service refuse connections;
    and little patience for response headers."""
    async with garbage_server() as gibberish:
        settings = gateway_settings(
            database_url,
            redis_url,
            app_service_url=upstreams["app_service_url"],
            build_service_url=gibberish,
            alert_service_url=f"http://127.0.0.1:{dead_port()}",
            terminal_service_url=f"http://127.0.0.1:{dead_port()}",
            response_timeout=SHORT_RESPONSE_TIMEOUT,
        )
        async with serve(create_app(settings, authenticator=AllowAll()), lifespan="on") as url:
            yield url


class BearerNames:
    """A stand-in authenticator: `Bearer <name>` is user <name>; no token is a 401; `Bearer bug` crashes."""

    async def authenticate(self, scope: Scope, route: Route) -> Identity:
        for name, value in scope["headers"]:
            if name == b"authorization" and value == b"Bearer bug":
                raise RuntimeError("a bug in the authenticator")
            if name == b"authorization" and value.startswith(b"Bearer "):
                return [("x-kepler-user", value.removeprefix(b"Bearer ").decode())]
        raise Unauthorized("a bearer token is required")


@pytest.fixture(scope="session")
async def authenticating_gateway_url(
    database_url: str, redis_url: str, upstreams: dict[str, str]
) -> AsyncIterator[str]:
    app = create_app(gateway_settings(database_url, redis_url, **upstreams), authenticator=BearerNames())
    async with serve(app, lifespan="on") as url:
        yield url


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as client:
        yield client


@pytest.fixture
async def broken_client(broken_gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=broken_gateway_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
async def signed_in(database_url: str) -> AsyncIterator[dict[str, str]]:
    """Headers of a signed-in user: a committed user and an access token from the key ring."""
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session, session.begin():
            user = await make_user(session, f"viewer-{secrets.token_hex(3)}@kepler.example")
        minter = await make_minter(sessionmaker)
        yield minter.access(user)
    finally:
        await engine.dispose()


def through(url: str, port: int) -> str:
    return str(URL(url).with_host("127.0.0.1").with_port(port))


@pytest.fixture
async def postgres_relay(database_url: str) -> Relay:
    return Relay(database_url)


@pytest.fixture
async def redis_relay(redis_url: str) -> Relay:
    return Relay(redis_url)


@pytest.fixture
async def gateway_over_relays(
    database_url: str,
    redis_url: str,
    upstreams: dict[str, str],
    postgres_relay: Relay,
    redis_relay: Relay,
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose Postgres and Redis both sit behind relays the test can cut."""
    overrides: dict[str, Any] = {
        "database_url": through(database_url, await postgres_relay.start()),
        "redis_url": through(redis_url, await redis_relay.start()),
    }
    settings = gateway_settings(**overrides, **upstreams)
    async with serve(create_app(settings), lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        yield client


@pytest.fixture
def gate(registry: Registry) -> Gate:
    gate_id = f"g{secrets.token_hex(4)}"
    release, finished = registry.gate(gate_id)
    return gate_id, release, finished


@pytest.fixture
def ws_closes(registry: Registry) -> dict[str, int]:
    return registry.ws_closes


@pytest.fixture
def raw_request(gateway_url: str) -> RawRequest:
    """One HTTP/1.1 exchange written byte for byte: no client library adds or drops headers."""
    port = int(gateway_url.rsplit(":", 1)[1])

    async def exchange(request: bytes) -> tuple[int, dict[str, list[str]], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status, headers = _parse_head(head)
            body = await reader.readexactly(int(headers.get("content-length", ["0"])[0]))
        finally:
            writer.close()
            await writer.wait_closed()
        return status, headers, body

    return exchange


def _parse_head(head: bytes) -> tuple[int, dict[str, list[str]]]:
    status_line, *lines = head.decode("latin-1").strip().split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status_line.split()[1]), headers
