"""Proxy metrics, labelled by upstream service and route pattern (never the raw path: ids would explode).

Label children are cached in plain dicts keyed by strings (whose hashes Python caches):
`Counter.labels()` validates and locks on every call, which shows up at 64 concurrent connections,
while the label space here is small and fixed.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Counter, Histogram, start_http_server

from kepler_gateway.routing import Route
from kepler_kit.metrics import REGISTRY

PROXIED = Counter(
    "kepler_gateway_proxied_requests_total",
    "Requests and WebSocket sessions the gateway proxied, by upstream, route pattern and status",
    ["upstream", "route", "method", "status"],
    registry=REGISTRY,
)
UPSTREAM_LATENCY = Histogram(
    "kepler_gateway_upstream_response_seconds",
    "Time until the upstream's response headers (streams would make whole-body time meaningless)",
    ["upstream", "route"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "WS"})

_counters: dict[tuple[str, str, int], Counter] = {}
_histograms: dict[str, Histogram] = {}


def count(route: Route, method: str, status: int) -> None:
    key = (route.pattern, method if method in _METHODS else "OTHER", status)
    child = _counters.get(key)
    if child is None:
        child = _counters[key] = PROXIED.labels(route.service.value, route.pattern, key[1], str(status))
    child.inc()


def observe_upstream(route: Route, seconds: float) -> None:
    child = _histograms.get(route.pattern)
    if child is None:
        child = _histograms[route.pattern] = UPSTREAM_LATENCY.labels(route.service.value, route.pattern)
    child.observe(seconds)


@asynccontextmanager
async def internal_listener(host: str, port: int | None) -> AsyncIterator[None]:
    """`/metrics` on a port of its own, for Prometheus inside the cluster network only: the public
    port does not serve it unless `KEPLER_GATEWAY_METRICS_PUBLIC` says so. prometheus_client's own
    server: a daemon thread that only reads the registry."""
    if port is None:
        yield
        return
    server, thread = start_http_server(port, host, registry=REGISTRY)
    try:
        yield
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join()
