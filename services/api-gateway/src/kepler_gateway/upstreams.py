"""The gateway's own calls to its upstreams (not proxied traffic): health, readiness, OpenAPI documents.

They share the aiohttp session of the WebSocket proxy, carry the request id, and are bounded by
`check_timeout` so a hung upstream makes `/readyz`, `/api/v1/status` and `/openapi.json` degrade
instead of hang.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector
from pydantic import ValidationError

from kepler_gateway.openapi import Document, MergeResult
from kepler_gateway.settings import GatewaySettings
from kepler_kit.context import outgoing_headers
from kepler_kit.contracts import GATEWAY, Service
from kepler_kit.health import Check, Readiness

# aiohttp must neither negotiate compression nor label bodies the client did not label.
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_FAILURES = (aiohttp.ClientError, OSError, ValueError)
PARTIAL_TTL = 2.0
Sources = dict[str, Document | None]


@asynccontextmanager
async def pooled_session(settings: GatewaySettings) -> AsyncIterator[ClientSession]:
    """The aiohttp session of the process (WebSockets, health, OpenAPI). Bytes pass through as received
    (no decompression), no cookies are kept (a shared jar would leak one user's cookies into another's
    request), and only connecting has a timeout: callers bound the rest themselves."""
    connector = TCPConnector(limit=settings.pool_limit, keepalive_timeout=settings.keepalive_timeout)
    session = ClientSession(
        connector=connector,
        cookie_jar=DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=SKIP_AUTO_HEADERS,
        timeout=ClientTimeout(
            total=None, connect=None, sock_connect=settings.connect_timeout, sock_read=None
        ),
        trust_env=False,
    )
    async with session:
        yield session


class Upstreams:
    def __init__(self, session: ClientSession, urls: Mapping[Service, str], timeout: float) -> None:
        self._session = session
        self._urls = urls
        self._timeout = ClientTimeout(total=timeout)

    async def _get_json(self, service: Service, path: str) -> tuple[int, Any]:
        url = self._urls[service] + path
        async with self._session.get(url, headers=outgoing_headers(), timeout=self._timeout) as response:
            return response.status, await response.json(content_type=None)

    async def health(self, service: Service) -> Check:
        """Liveness of the upstream process, for the gateway's own readiness."""
        try:
            status, _ = await self._get_json(service, "/healthz")
        except _FAILURES as exc:
            return Check(name=service.value, ok=False, detail=type(exc).__name__)
        return Check(name=service.value, ok=status == 200, detail=None if status == 200 else f"HTTP {status}")

    async def readiness(self, service: Service) -> Readiness:
        try:
            _, body = await self._get_json(service, "/readyz")
            return Readiness.model_validate(body)
        except (*_FAILURES, ValidationError) as exc:
            failed = Check(name="reachable", ok=False, detail=type(exc).__name__)
            return Readiness(service=service.value, ready=False, checks=[failed])

    async def openapi(self, service: Service) -> Document | None:
        try:
            status, body = await self._get_json(service, "/openapi.json")
        except _FAILURES:
            return None
        return body if status == 200 and isinstance(body, dict) else None


class MergedDocument:
    """Merging on every `/openapi.json` would hit four services per page load of `/docs`; a short
    cache keeps it cheap while a redeployed service still shows up within seconds. A partial merge
    (some service down) is kept only briefly, so a service that comes back is not hidden for long."""

    def __init__(self, upstreams: Upstreams, merge: Callable[[Sources], MergeResult], ttl: float) -> None:
        self._upstreams = upstreams
        self._merge = merge
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._value: MergeResult | None = None
        self._expires = 0.0

    async def get(self, own: Document) -> MergeResult:
        """`own` is the gateway's document (its own routes), merged first."""
        if self._value is not None and time.monotonic() < self._expires:
            return self._value
        async with self._lock:  # one refresh at a time; waiters get its result
            if self._value is None or time.monotonic() >= self._expires:
                self._value = await self._refresh(own)
                ttl = min(self._ttl, PARTIAL_TTL) if self._value.unavailable else self._ttl
                self._expires = time.monotonic() + ttl
            return self._value

    async def _refresh(self, own: Document) -> MergeResult:
        services = list(Service)
        documents = await asyncio.gather(*(self._upstreams.openapi(service) for service in services))
        sources: Sources = {GATEWAY: own}
        sources.update((s.value, d) for s, d in zip(services, documents, strict=True))
        return self._merge(sources)
