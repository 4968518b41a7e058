"""Pure ASGI middleware: request id in and out, a log context, and per-route metrics."""

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kepler_kit.context import REQUEST_ID_HEADER, clean_request_id, request_id_var
from kepler_kit.metrics import HTTP_LATENCY, HTTP_REQUESTS

_RID_BYTES = REQUEST_ID_HEADER.encode()


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    """Takes X-Request-ID (or makes one), returns it, and records metrics by route template."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = clean_request_id(header(scope, _RID_BYTES))
        token = request_id_var.set(rid)
        structlog.contextvars.bind_contextvars(request_id=rid)
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (_RID_BYTES, rid.encode())]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._observe(scope, status[0], time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "<unmatched>"
        method = scope.get("method", "WS")
        HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
        HTTP_LATENCY.labels(self.service, method, route).observe(elapsed)
