"""WebSocket upgrades on routed paths, relayed frame by frame to the upstream (terminal exec sessions).

The upstream handshake happens before the client's is accepted, so the subprotocol the upstream
picked (e.g. `v4.channel.k8s.io`) is the one the client gets, and a refused or unreachable upstream
can still be told to the client as an HTTP problem response (ASGI `websocket.http.response`), or
as close code 1011 on servers without that extension.
"""

import asyncio
import time
from collections.abc import Mapping
from http import HTTPStatus

import aiohttp
from aiohttp import ClientSession, ClientWebSocketResponse, ClientWSTimeout, WSMsgType
from starlette.types import Receive, Scope, Send

from kepler_gateway import metrics
from kepler_gateway.auth import UpstreamAuthenticator
from kepler_gateway.headers import as_text, upstream_headers
from kepler_gateway.http1 import UpstreamUnavailable
from kepler_gateway.outages import is_outage, unavailable
from kepler_gateway.proxy import Upstream, request_id, upstream_error
from kepler_gateway.racing import first_completed
from kepler_gateway.routing import Route
from kepler_kit.context import REQUEST_ID_HEADER, request_id_var
from kepler_kit.contracts import Service
from kepler_kit.errors import KeplerError
from kepler_kit.logging import get_logger
from kepler_kit.middleware import AccessLog
from kepler_kit.problems import problem_response

log = get_logger(__name__)
_RID = REQUEST_ID_HEADER.encode()
INTERNAL_ERROR = 1011
MAX_MESSAGE = 16 * 1024 * 1024  # uvicorn's default ws_max_size on the client side
_SENDABLE = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})


def sendable_close_code(code: int | None) -> int:
    """Codes that may appear in a close frame: 1005/1006 only describe what happened, so they are
    translated (no status → normal closure, abnormal closure → internal error)."""
    if code is not None and (code in _SENDABLE or 3000 <= code <= 4999):
        return code
    return 1000 if code in (None, 1005) else INTERNAL_ERROR


def refused(status: int, detail: str) -> KeplerError:
    """The upstream answered the handshake with an HTTP error: the client gets the same status."""
    error = KeplerError(detail)
    error.status, error.code, error.title = status, f"http-{status}", HTTPStatus(status).phrase
    return error


async def reject(scope: Scope, send: Send, error: KeplerError, rid: str) -> None:
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": INTERNAL_ERROR})
        return
    response = problem_response(error, scope["path"], headers={**error.headers, REQUEST_ID_HEADER: rid})
    start = {"type": "websocket.http.response.start", "status": error.status, "headers": response.raw_headers}
    await send(start)
    await send({"type": "websocket.http.response.body", "body": response.body})


async def client_to_upstream(receive: Receive, upstream: ClientWebSocketResponse) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            reason = (message.get("reason") or "").encode()[:123]
            await upstream.close(code=sendable_close_code(message.get("code")), message=reason)
            return
        if (text := message.get("text")) is not None:
            await upstream.send_str(text)
        else:
            await upstream.send_bytes(message.get("bytes") or b"")


async def upstream_to_client(upstream: ClientWebSocketResponse, send: Send) -> None:
    while True:
        msg = await upstream.receive()
        if msg.type is WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": msg.data})
        elif msg.type is WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": msg.data})
        elif msg.type is WSMsgType.CLOSING:  # we are closing: the client left first
            return
        else:  # CLOSE carries the upstream's code; CLOSED/ERROR mean the connection broke
            code = msg.data if msg.type is WSMsgType.CLOSE else upstream.close_code
            reason = msg.extra if msg.type is WSMsgType.CLOSE and isinstance(msg.extra, str) else ""
            await send({"type": "websocket.close", "code": sendable_close_code(code), "reason": reason})
            return


class WebSocketProxy:
    def __init__(
        self, upstreams: Mapping[Service, Upstream], authenticator: UpstreamAuthenticator, timeout: float
    ) -> None:
        self._upstreams = upstreams
        self._authenticator = authenticator
        self._timeout = timeout
        self._access = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        rid = request_id(scope)
        token = request_id_var.set(rid)
        started = time.perf_counter()
        try:
            if (await receive())["type"] == "websocket.connect":
                status = await self._session(scope, receive, send, route, rid)
                metrics.count(route, "WS", status)
                self._access("WS", route.pattern, status, time.perf_counter() - started)
        finally:
            request_id_var.reset(token)

    async def _session(self, scope: Scope, receive: Receive, send: Send, route: Route, rid: str) -> int:
        try:
            upstream = await self._connect(scope, route, rid)
        except KeplerError as error:
            await reject(scope, send, error, rid)
            return error.status
        try:
            accept = {
                "type": "websocket.accept",
                "subprotocol": upstream.protocol,
                "headers": [(_RID, rid.encode())],
            }
            await send(accept)
            await first_completed(client_to_upstream(receive, upstream), upstream_to_client(upstream, send))
        finally:
            await upstream.close()
        return HTTPStatus.SWITCHING_PROTOCOLS

    async def _connect(self, scope: Scope, route: Route, rid: str) -> ClientWebSocketResponse:
        try:
            identity = await self._authenticator.authenticate(scope, route)
        except Exception as exc:
            if is_outage(exc):
                raise unavailable() from exc
            raise
        session: ClientSession = scope["state"]["http"]
        url = self._upstreams[route.service].ws_url(scope)
        try:
            async with asyncio.timeout(self._timeout):
                return await session.ws_connect(
                    url,
                    protocols=scope.get("subprotocols", ()),
                    headers=as_text(upstream_headers(scope, rid.encode(), identity, websocket=True)),
                    max_msg_size=MAX_MESSAGE,
                    timeout=ClientWSTimeout(ws_receive=None, ws_close=5.0),
                )
        except aiohttp.WSServerHandshakeError as exc:
            if 400 <= exc.status < 600:
                raise refused(exc.status, f"{route.service} refused the WebSocket: {exc.message}") from exc
            raise upstream_error(route.service, exc, self._timeout) from exc
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("upstream_failed", upstream=route.service.value, error=type(exc).__name__)
            failure = UpstreamUnavailable(str(exc)) if isinstance(exc, aiohttp.ClientConnectorError) else exc
            raise upstream_error(route.service, failure, self._timeout) from exc
