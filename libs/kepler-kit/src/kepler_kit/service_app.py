"""The wiring every Kepler service shares: lifespan resources, middleware, errors, health, OpenAPI."""

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_kit.access import AccessControl, ServiceAuthenticator, install_permission_check
from kepler_kit.contracts import service_queue
from kepler_kit.db import create_sessionmaker, create_settings_engine
from kepler_kit.errors import PROBLEM_JSON, Problem
from kepler_kit.health import (
    ReadinessCheck,
    database_check,
    health_router,
    redis_check,
    status_router,
    worker_check,
)
from kepler_kit.identity import TRUSTED_PROXIES, TrustedProxies
from kepler_kit.jobs import create_arq_pool
from kepler_kit.logging import configure_logging
from kepler_kit.middleware import RequestContextMiddleware
from kepler_kit.openapi import document_errors
from kepler_kit.problems import UnhandledErrorMiddleware, install_problem_handlers
from kepler_kit.settings import KeplerSettings
from kepler_kit.tokens import KeyRing, TokenVerifier

ExtraLifespan = Callable[[dict[str, Any]], AbstractAsyncContextManager[dict[str, Any]]]
_COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": title}
    for status, title in ((422, "Request validation failed"), (500, "Internal server error"))
}


def operation_id(route: APIRoute) -> str:
    """Stable operationIds from endpoint names: `list_namespaces` → `listNamespaces`."""
    head, *rest = route.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _permission(route: APIRoute) -> str | None:
    """The action `install_permission_check` found declared by the route's `require(...)`/`public()`."""
    action = getattr(route, "kepler_action", None)
    return str(action) if action is not None else None


def annotate_permissions(routers: Sequence[APIRouter], document: dict[str, Any]) -> dict[str, Any]:
    """`x-kepler-permission` on each operation, and bearer auth on each that is not public."""
    routes = (r for router in routers for r in router.routes if isinstance(r, APIRoute))
    actions = {operation_id(route): _permission(route) for route in routes}
    operations = (op for path in document.get("paths", {}).values() for op in path.values())
    for operation in operations:
        action = actions.get(operation.get("operationId", ""))
        if action is None:
            continue
        operation["x-kepler-permission"] = action
        if action != "public":
            operation["security"] = [{"bearer": []}]
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearer"] = {"type": "http", "scheme": "bearer", "description": "Access token or API token"}
    return document


def problem_media_types(document: dict[str, Any]) -> dict[str, Any]:
    """Error responses are documented as application/problem+json (FastAPI would say application/json)."""
    for operation in (op for path in document.get("paths", {}).values() for op in path.values()):
        for status, response in operation.get("responses", {}).items():
            content = response.get("content", {})
            if status[0] in "45" and "application/json" in content:
                content[PROBLEM_JSON] = content.pop("application/json")
    return document


def _openapi(app: FastAPI, routers: Sequence[APIRouter]) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            annotated = annotate_permissions(routers, problem_media_types(document))
            app.openapi_schema = document_errors(annotated)
        return app.openapi_schema

    return build


def security_state(service: str, sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Token verification and live access checks, over the given sessions."""
    access = AccessControl(sessionmaker)
    keyring = KeyRing(sessionmaker)
    verifier = TokenVerifier(keyring)
    return {
        "access_control": access,
        "keyring": keyring,
        "verifier": verifier,
        "authenticator": ServiceAuthenticator(service, verifier, access),
    }


def _lifespan(
    service: str, settings: KeplerSettings, checks: Sequence[ReadinessCheck], extra: ExtraLifespan | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine = create_settings_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        arq = await create_arq_pool(settings.redis_url, settings.queue_name or service_queue(service))
        state: dict[str, Any] = {
            "service": service,
            "settings": settings,
            "engine": engine,
            "sessionmaker": sessionmaker,
            "arq": arq,
            "readiness_checks": [
                database_check,
                redis_check,
                *checks,
                *(worker_check(queue) for queue in settings.readiness_worker_queues),
            ],
            TRUSTED_PROXIES: TrustedProxies(settings.trusted_proxies),
            **security_state(service, sessionmaker),
        }
        listener = asyncio.create_task(state["access_control"].listen(arq))
        # Built now, not on the first request: on a busy machine that took seconds, longer than the
        # gateway waits for a document it merges, and /openapi.json came back without this service.
        app.openapi()
        gc.collect()
        gc.freeze()  # what start-up built lives forever: the collector need not rescan it under load
        gc.set_threshold(20_000, 20, 20)  # requests make short-lived objects: collect the young less often

        try:
            if extra is None:
                yield state
            else:
                async with extra(state) as more:
                    yield state | more
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await arq.aclose()
            await engine.dispose()

    return lifespan


def create_service_app(
    *,
    service: str,
    title: str,
    settings: KeplerSettings,
    routers: Sequence[APIRouter],
    checks: Sequence[ReadinessCheck] = (),
    extra_lifespan: ExtraLifespan | None = None,
    description: str = "",
) -> FastAPI:
    configure_logging(service, settings.log_level, settings.log_json)
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=_lifespan(service, settings, checks, extra_lifespan),
        generate_unique_id_function=operation_id,
        responses=_COMMON_ERRORS,
        # A service sits behind the gateway: a redirect would name the service's own address, which clients
        # cannot reach and must not learn. A path with a stray slash is a 404 problem instead.
        redirect_slashes=False,
    )
    all_routers = [health_router(service), status_router(service), *routers]
    for route in (r for router in all_routers for r in router.routes if isinstance(r, APIRoute)):
        install_permission_check(route)
    app.openapi = _openapi(app, all_routers)  # type: ignore[method-assign]
    install_problem_handlers(app)
    for router in all_routers:
        app.include_router(router)
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(RequestContextMiddleware, service=service)
    return app
