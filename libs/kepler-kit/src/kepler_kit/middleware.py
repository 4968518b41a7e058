"""Pure ASGI middleware: request id in and out, a log context, per-route metrics and one access line."""

import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kepler_kit.context import REQUEST_ID_HEADER, clean_request_id, request_id_var
from kepler_kit.identity import PRINCIPAL_KEY
from kepler_kit.metrics import HTTP_LATENCY, HTTP_REQUESTS

_RID_BYTES = REQUEST_ID_HEADER.encode()
# Probes and scrapes arrive every few seconds from machines: their lines are debug, the rest info.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class AccessLog:
    """One `request` line per request: method, route template (never the path or query string, which
    may carry ids and secrets), status, duration and, when known, the user; the request id comes from
    the log context. Bound when built, so it renders as the app's `configure_logging` said."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("kepler.access").bind()

    def __call__(
        self, method: str, route: str, status: int, seconds: float, user_id: uuid.UUID | None = None
    ) -> None:
        emit = self._log.debug if route in QUIET_ROUTES else self._log.info
        duration_ms = round(seconds * 1000, 2)
        if user_id is None:
            emit("request", method=method, route=route, status=status, duration_ms=duration_ms)
        else:
            emit(
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=duration_ms,
                user_id=str(user_id),
            )


class RequestContextMiddleware:
    """Takes X-Request-ID (or makes one), returns it, records metrics by route template and logs the
    request (uvicorn's own access log stays off: it prints query strings)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self.access = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = clean_request_id(header(scope, _RID_BYTES))
        token = request_id_var.set(rid)
        structlog.contextvars.bind_contextvars(request_id=rid)
        status = [500]

        async def send_with_id(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (_RID_BYTES, rid.encode())]
            elif kind == "websocket.accept":
                status[0] = 101
            elif kind == "websocket.close" and status[0] == 500:
                status[0] = 403  # closed before accepting: refused, as uvicorn reports it
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
        principal = scope.get(PRINCIPAL_KEY)
        self.access(method, route, status, elapsed, principal.user_id if principal is not None else None)
