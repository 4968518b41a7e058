"""CORS for the SPA origins in `KEPLER_CORS_ORIGINS`, answered at the gateway (pure ASGI).

Preflights never reach an upstream: they are answered here from the configured list, so services
need no CORS code. An allowed origin is echoed (never `*`, because credentials are allowed); any
response to a request that carried an Origin says `Vary: Origin` so a cache keeps the variants apart.
WebSocket handshakes are not CORS requests and pass through untouched.
"""

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kepler_kit.errors import Forbidden
from kepler_kit.problems import problem_response

ALLOW_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
EXPOSE_HEADERS = b"X-Request-ID"
_PREFLIGHT_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def _cors_request_headers(scope: Scope) -> tuple[bytes, bytes, bytes]:
    """(origin, access-control-request-method, access-control-request-headers), empty when absent."""
    origin = method = requested = b""
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value
        elif name == b"access-control-request-method":
            method = value
        elif name == b"access-control-request-headers":
            requested = value
    return origin, method, requested


def _with_vary(headers: list[tuple[bytes, bytes]], value: bytes) -> list[tuple[bytes, bytes]]:
    for i, (name, existing) in enumerate(headers):
        if name.lower() == b"vary":
            headers[i] = (b"vary", existing + b", " + value)
            return headers
    headers.append((b"vary", value))
    return headers


class CORSMiddleware:
    def __init__(self, app: ASGIApp, origins: Iterable[str], *, max_age: int = 600) -> None:
        self.app = app
        self.origins = frozenset(origin.rstrip("/").encode() for origin in origins)
        self.any_origin = b"*" in self.origins
        self.max_age = str(max_age).encode()

    def allowed(self, origin: bytes) -> bool:
        return self.any_origin or origin in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin, preflight_method, requested = _cors_request_headers(scope)
        if not origin:
            await self.app(scope, receive, send)
        elif scope["method"] == "OPTIONS" and preflight_method:
            await self._preflight(scope, receive, send, origin, requested)
        else:
            await self.app(scope, receive, self._decorating(send, origin))

    async def _preflight(
        self, scope: Scope, receive: Receive, send: Send, origin: bytes, requested: bytes
    ) -> None:
        if not self.allowed(origin):
            error = Forbidden(f"Origin {origin.decode('latin-1')} is not allowed to call this API")
            await problem_response(error, scope["path"], headers={"vary": _PREFLIGHT_VARY.decode()})(
                scope, receive, send
            )
            return
        headers = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-max-age", self.max_age),
            (b"vary", _PREFLIGHT_VARY),
            (b"content-length", b"0"),
        ]
        if requested:
            headers.append((b"access-control-allow-headers", requested))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def _decorating(self, send: Send, origin: bytes) -> Send:
        extra = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
        ]
        allowed = self.allowed(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *(extra if allowed else ())]
                message["headers"] = _with_vary(headers, b"Origin")
            await send(message)

        return send_with_cors
