"""The hot path: one HTTP exchange relayed to its upstream over the lifespan's keep-alive pools
(`http1.Pool`, one per upstream service).

Bodies stream both ways without buffering: a request body that fits in the first ASGI message is
sent with the head in one write, a longer one streams (chunked unless the client gave a length);
each response chunk goes to the client as soon as it is parsed. Failures before the response starts
become problem+json: no connection (refused, DNS) → 503, no response headers within
`response_timeout` (or no connection within `connect_timeout`) → 504, anything else (reset,
malformed response) → 502. After the response has started a failure can only cut the connection,
which is what a client of a truncated response must see.
"""

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from random import getrandbits

from starlette.types import Receive, Scope, Send
from yarl import URL

from kepler_gateway import metrics
from kepler_gateway.auth import UpstreamAuthenticator
from kepler_gateway.headers import downstream_headers, upstream_headers
from kepler_gateway.http1 import UPSTREAM_FAILURES, Body, Connection, Pool, UpstreamUnavailable, request_head
from kepler_gateway.outages import is_outage, unavailable
from kepler_gateway.racing import first_completed
from kepler_gateway.routing import Route
from kepler_kit.context import REQUEST_ID_HEADER, clean_request_id, request_id_var
from kepler_kit.contracts import Service
from kepler_kit.errors import BadGateway, GatewayTimeout, KeplerError, ServiceUnavailable
from kepler_kit.logging import get_logger
from kepler_kit.middleware import AccessLog, header
from kepler_kit.problems import problem_response

log = get_logger(__name__)
_RID = REQUEST_ID_HEADER.encode()
CLIENT_CLOSED = 499  # nginx's status for "the client went away first"; only ever seen in metrics
_UNHANDLED = "The gateway could not complete the request; it has been logged."


class ClientGone(ConnectionError):
    """The client disconnected while its request body was still being relayed."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """An upstream's origin, split once at start-up so a request's URL is built without parsing."""

    service: Service
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, service: Service, url: str) -> "Upstream":
        parsed = URL(url)
        if parsed.scheme != "http" or not parsed.host or parsed.port is None:
            raise ValueError(f"upstream URL for {service} must be http://host[:port][/path], not {url!r}")
        return cls(service, parsed.host, parsed.port, parsed.raw_path.rstrip("/"))

    def target(self, scope: Scope) -> bytes:
        """The client's raw path and query, untouched: re-quoting would change what the upstream sees."""
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope["query_string"]
        path = self.base_path.encode() + raw_path if self.base_path else raw_path
        return path + b"?" + query if query else path

    def ws_url(self, scope: Scope) -> URL:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        return URL.build(
            scheme="ws",
            host=self.host,
            port=self.port,
            path=self.base_path + raw_path.decode("latin-1"),
            query_string=scope["query_string"].decode("latin-1"),
            encoded=True,
        )

    def pool(self, *, connect_timeout: float, idle_timeout: float, limit: int) -> Pool:
        return Pool(
            self.host, self.port, connect_timeout=connect_timeout, idle_timeout=idle_timeout, limit=limit
        )


def upstreams(urls: Mapping[Service, str]) -> dict[Service, Upstream]:
    return {service: Upstream.parse(service, url) for service, url in urls.items()}


def request_id(scope: Scope) -> str:
    """The client's id when it is acceptable, else a fresh one. Fresh ids come from `random`, not
    `secrets`: they only correlate log lines, and a getrandom() syscall per request shows in the bench."""
    supplied = header(scope, _RID)
    return clean_request_id(supplied) if supplied else f"{getrandbits(128):032x}"


def upstream_error(service: Service, exc: BaseException, timeout: float) -> KeplerError:
    if isinstance(exc, TimeoutError):  # before ConnectionError: both are OSErrors
        return GatewayTimeout(f"{service} did not respond within {timeout:g} s")
    if isinstance(exc, UpstreamUnavailable):
        return ServiceUnavailable(f"{service} is unavailable")
    return BadGateway(f"{service} failed to answer: {type(exc).__name__}")


async def request_body(receive: Receive) -> Body:
    """A body that fits in one ASGI message is sent as bytes with the head; a longer one streams.
    No body at all is `None`, so nothing is sent after the head of a GET."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):
        return _rest_of_body(body, receive)
    return body or None


async def _rest_of_body(first: bytes, receive: Receive) -> AsyncIterator[bytes]:
    if first:
        yield first
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        more = message.get("more_body", False)
        if chunk := message.get("body", b""):
            yield chunk


def framing(headers: list[tuple[bytes, bytes]], body: Body) -> bool:
    """Adds the framing header a body needs; True when the body must be sent chunked."""
    if body is None or any(name == b"content-length" for name, _ in headers):
        return False
    if isinstance(body, bytes):
        headers.append((b"content-length", str(len(body)).encode()))
        return False
    headers.append((b"transfer-encoding", b"chunked"))
    return True


async def copy_body(conn: Connection, send: Send) -> None:
    """Forward each piece as it is parsed; the last one is flagged so no empty closing message is needed."""
    while True:
        chunk = await conn.read()
        more = not conn.body_done
        await send({"type": "http.response.body", "body": chunk, "more_body": more})
        if not more:
            return


async def _problem(error: KeplerError, scope: Scope, receive: Receive, send: Send, rid: str) -> int:
    response = problem_response(error, scope["path"], headers={**error.headers, REQUEST_ID_HEADER: rid})
    await response(scope, receive, send)
    return error.status


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class HttpProxy:
    def __init__(
        self, upstreams: Mapping[Service, Upstream], authenticator: UpstreamAuthenticator, timeout: float
    ) -> None:
        self._upstreams = upstreams
        self._authenticator = authenticator
        self._timeout = timeout
        self._access = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        """The access line names the route pattern; the user is on the upstream's line (same request id)."""
        rid = request_id(scope)
        token = request_id_var.set(rid)
        status, started = CLIENT_CLOSED, time.perf_counter()
        try:
            status = await self._exchange(scope, receive, send, route, rid)
        finally:
            metrics.count(route, scope["method"], status)
            self._access(scope["method"], route.pattern, status, time.perf_counter() - started)
            request_id_var.reset(token)

    async def _exchange(self, scope: Scope, receive: Receive, send: Send, route: Route, rid: str) -> int:
        pool: Pool = scope["state"]["pools"][route.service]
        try:
            conn, streamed_request = await self._open(pool, scope, receive, route, rid)
        except ClientGone:
            return CLIENT_CLOSED
        except KeplerError as error:
            return await _problem(error, scope, receive, send, rid)
        except Exception as exc:  # the kit's UnhandledErrorMiddleware is not on this path: same promise here
            if is_outage(exc):  # authenticating needs Postgres (API tokens) and Redis: not a bug
                log.warning("backing_store_unavailable", path=scope["path"], error=type(exc).__name__)
                return await _problem(unavailable(), scope, receive, send, rid)
            log.exception("proxy_failed", path=scope["path"])
            return await _problem(KeplerError(_UNHANDLED), scope, receive, send, rid)
        try:
            await self._relay(conn, receive, send, rid, watch=not streamed_request)
        finally:
            pool.release(conn)
        return conn.status

    async def _open(
        self, pool: Pool, scope: Scope, receive: Receive, route: Route, rid: str
    ) -> tuple[Connection, bool]:
        """Send the request; returns once the upstream's status and headers are in."""
        identity = await self._authenticator.authenticate(scope, route)
        upstream = self._upstreams[route.service]
        headers = upstream_headers(scope, rid.encode(), identity)
        body = await request_body(receive)
        chunked = framing(headers, body)
        head = request_head(scope["method"], upstream.target(scope), pool.host_header, headers)
        started = time.perf_counter()
        try:
            conn = await pool.request(
                head, body, chunked=chunked, method=scope["method"], headers_within=self._timeout
            )
        except ClientGone:
            raise  # the client left mid-upload: nobody to tell
        except UPSTREAM_FAILURES as exc:
            log.warning("upstream_failed", upstream=route.service.value, error=type(exc).__name__)
            raise upstream_error(route.service, exc, self._timeout) from exc
        metrics.observe_upstream(route, time.perf_counter() - started)
        return conn, not isinstance(body, bytes | None)

    async def _relay(self, conn: Connection, receive: Receive, send: Send, rid: str, watch: bool) -> None:
        """Status and headers, then the body. An open-ended body (SSE, log follow: no Content-Length)
        is raced against the client's disconnect, so a gone client frees the upstream stream at once."""
        headers = downstream_headers(conn.headers, rid.encode())
        await send({"type": "http.response.start", "status": conn.status, "headers": headers})
        try:
            if watch and not conn.body_done and not any(name == b"content-length" for name, _ in headers):
                await first_completed(copy_body(conn, send), wait_for_disconnect(receive))
            else:
                await copy_body(conn, send)
        except UPSTREAM_FAILURES as exc:
            log.warning("upstream_stream_failed", status=conn.status, error=type(exc).__name__)
            conn.close()
