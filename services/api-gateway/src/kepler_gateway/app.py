"""The gateway process: a thin ASGI dispatcher in front of a small FastAPI app.

Routed `/api/v1/...` requests go straight from the dispatcher to the proxy, bypassing FastAPI's
routing, dependency and middleware machinery (measured: they would cost more than the proxying);
the proxy does its own request id and metrics. Everything else (health, metrics, docs, the merged
OpenAPI document, `/api/v1/status`, and the 404 problem for unknown paths) is the FastAPI app built
by the kit like every other service, which also owns the lifespan: database, Redis, one keep-alive
pool per upstream for the HTTP proxy (`http1`), and one aiohttp session for WebSockets and the
gateway's own calls (health, readiness, OpenAPI); the proxies read them from the lifespan state.
"""

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from kepler_gateway import metrics
from kepler_gateway.api import merged_openapi, router
from kepler_gateway.auth import UpstreamAuthenticator
from kepler_gateway.cors import CORSMiddleware
from kepler_gateway.identity.wiring import ROUTERS as IDENTITY_ROUTERS
from kepler_gateway.identity.wiring import StateAuthenticator, identity_resources
from kepler_gateway.limits import BodyLimit
from kepler_gateway.openapi import merge_openapi
from kepler_gateway.outages import CONNECTION_LEVEL, outage_response
from kepler_gateway.proxy import HttpProxy, Upstream, upstreams
from kepler_gateway.routing import DEFAULT_TABLE, RouteTable
from kepler_gateway.settings import GatewaySettings
from kepler_gateway.upstreams import MergedDocument, Upstreams, pooled_session
from kepler_gateway.websocket import WebSocketProxy
from kepler_kit.contracts import GATEWAY, Service
from kepler_kit.errors import NotFound
from kepler_kit.health import Check, ReadinessCheck
from kepler_kit.problems import problem_response
from kepler_kit.service_app import ExtraLifespan, create_service_app

WEBHOOKS = "/api/v1/webhooks/"  # forges post whole payloads (GitHub's may reach 25 MB)


class Gateway:
    """Every request passes the body limit first: the gateway's own routes and the proxied ones."""

    def __init__(
        self,
        control: ASGIApp,
        http: HttpProxy,
        websocket: WebSocketProxy,
        table: RouteTable,
        body_limit: Callable[[ASGIApp], ASGIApp] = lambda app: app,
    ) -> None:
        self.control = control
        self.http = http
        self.websocket = websocket
        self.table = table
        self._limited = body_limit(self._dispatch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._limited(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        route = self.table.resolve(scope["path"]) if kind != "lifespan" else None
        if route is None:
            await self.control(scope, receive, send)
        elif kind == "http":
            await self.http(scope, receive, send, route)
        else:
            await self.websocket(scope, receive, send, route)


class NotPublic:
    """Paths the public port answers as it answers unknown ones (404): `/metrics` is served by the
    internal listener (`KEPLER_GATEWAY_METRICS_PORT`) unless `KEPLER_GATEWAY_METRICS_PUBLIC` is set."""

    def __init__(self, app: ASGIApp, paths: frozenset[str]) -> None:
        self.app, self.paths = app, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            await problem_response(NotFound(), scope["path"])(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def upstream_check(service: Service) -> ReadinessCheck:
    async def check(state: dict[str, Any]) -> Check:
        upstreams: Upstreams = state["upstreams"]
        return await upstreams.health(service)

    check.__name__ = f"{service.value}_check"
    return check


async def clusters_check(state: dict[str, Any]) -> Check:
    """app-service's word on the clusters (which answer, which are SIMULATED by the sandbox), so the
    public `/readyz` says when nothing really runs. Informational: app-service's own check decides."""
    upstreams: Upstreams = state["upstreams"]
    reported = await upstreams.readiness(Service.APP)
    clusters = next((check for check in reported.checks if check.name == "clusters"), None)
    detail = clusters.detail if clusters is not None else f"unknown: {Service.APP.value} did not say"
    return Check(name="clusters", ok=True, detail=detail)


def owner_of(table: RouteTable, path: str) -> str:
    route = table.resolve(path)
    return route.service.value if route else GATEWAY


def tag_for(table: RouteTable, path: str) -> str | None:
    route = table.resolve(path)
    return route.tag if route else None


def pool_options(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "connect_timeout": settings.connect_timeout,
        "idle_timeout": settings.keepalive_timeout,
        "limit": settings.pool_limit,
    }


def gateway_lifespan(
    settings: GatewaySettings, table: RouteTable, proxied: Mapping[Service, Upstream]
) -> ExtraLifespan:
    merge = partial(
        merge_openapi, owner_of=partial(owner_of, table), tag_for=partial(tag_for, table), own=GATEWAY
    )

    @asynccontextmanager
    async def lifespan(state: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        pools = {service: upstream.pool(**pool_options(settings)) for service, upstream in proxied.items()}
        async with (
            pooled_session(settings) as session,
            identity_resources(settings, state) as identity,
            metrics.internal_listener(settings.metrics_host, settings.metrics_port),
        ):
            upstreams = Upstreams(session, settings.upstream_urls(), settings.check_timeout)
            merged = MergedDocument(upstreams, merge, settings.openapi_cache_seconds)
            try:
                yield identity | {
                    "http": session,
                    "pools": pools,
                    "upstreams": upstreams,
                    "merged_document": merged,
                }
            finally:
                for pool in pools.values():
                    pool.close()

    return lifespan


def control_app(
    settings: GatewaySettings,
    table: RouteTable,
    proxied: Mapping[Service, Upstream],
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    app = create_service_app(
        service=GATEWAY,
        title="Kepler API",
        settings=settings,
        routers=[router, *routers],
        checks=[*(upstream_check(service) for service in Service), clusters_check],
        extra_lifespan=gateway_lifespan(settings, table, proxied),
        description="The public entry point of Kepler.",
    )
    _serve_merged_openapi(app)
    for kind in CONNECTION_LEVEL:  # its own routes authenticate against Postgres and Redis too
        app.add_exception_handler(kind, outage_response)
    if not settings.metrics_public:
        app.add_middleware(NotPublic, paths=frozenset({"/metrics"}))
    # Only the OIDC login uses the session (state, nonce and PKCE verifier between redirect and callback).
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie="kepler_login",
        max_age=600,
        same_site="lax",
        https_only=settings.env == "production",
    )
    return app


def _serve_merged_openapi(app: FastAPI) -> None:
    """FastAPI registered its own /openapi.json (this app's routes only) before ours; the gateway's
    must be the merged document, which FastAPI's /docs then shows."""
    app.router.routes[:] = [
        route
        for route in app.router.routes
        if getattr(route, "path", None) != app.openapi_url
        or getattr(route, "name", None) == merged_openapi.__name__
    ]


def create_app(
    settings: GatewaySettings | None = None,
    *,
    authenticator: UpstreamAuthenticator | None = None,
    routers: Sequence[APIRouter] = (),
    table: RouteTable = DEFAULT_TABLE,
) -> ASGIApp:
    """The ASGI app uvicorn serves (`--factory`). `authenticator` decides who may pass the proxy;
    `routers` are more routes the gateway answers itself (they appear in the merged OpenAPI)."""
    settings = settings or GatewaySettings()
    auth = authenticator or StateAuthenticator()
    proxied = upstreams(settings.upstream_urls())
    gateway = Gateway(
        control_app(settings, table, proxied, [*IDENTITY_ROUTERS, *routers]),
        HttpProxy(proxied, auth, settings.response_timeout),
        WebSocketProxy(proxied, auth, settings.response_timeout),
        table,
        partial(
            BodyLimit, limit=settings.max_body_bytes, by_prefix=[(WEBHOOKS, settings.webhook_max_body_bytes)]
        ),
    )
    return CORSMiddleware(gateway, settings.cors_origins) if settings.cors_origins else gateway
