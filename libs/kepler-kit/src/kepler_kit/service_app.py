"""The wiring every Kepler service shares: lifespan resources, middleware, errors, health, OpenAPI."""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from kepler_kit.db import create_engine, create_sessionmaker
from kepler_kit.errors import PROBLEM_JSON, Problem
from kepler_kit.health import ReadinessCheck, database_check, health_router, redis_check, status_router
from kepler_kit.jobs import create_arq_pool
from kepler_kit.logging import configure_logging
from kepler_kit.middleware import RequestContextMiddleware
from kepler_kit.problems import UnhandledErrorMiddleware, install_problem_handlers
from kepler_kit.settings import KeplerSettings

ExtraLifespan = Callable[[dict[str, Any]], AbstractAsyncContextManager[dict[str, Any]]]
_COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": title}
    for status, title in ((422, "Request validation failed"), (500, "Internal server error"))
}


def operation_id(route: APIRoute) -> str:
    """Stable operationIds from endpoint names: `list_namespaces` → `listNamespaces`."""
    head, *rest = route.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def problem_media_types(document: dict[str, Any]) -> dict[str, Any]:
    """Error responses are documented as application/problem+json (FastAPI would say application/json)."""
    for operation in (op for path in document.get("paths", {}).values() for op in path.values()):
        for status, response in operation.get("responses", {}).items():
            content = response.get("content", {})
            if status[0] in "45" and "application/json" in content:
                content[PROBLEM_JSON] = content.pop("application/json")
    return document


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_media_types(
                get_openapi(
                    title=app.title, version=app.version, description=app.description, routes=app.routes
                )
            )
        return app.openapi_schema

    return build


def _lifespan(
    service: str, settings: KeplerSettings, checks: Sequence[ReadinessCheck], extra: ExtraLifespan | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine = create_engine(settings.database_url)
        arq = await create_arq_pool(settings.redis_url, settings.queue_name or f"kepler:{service}")
        state: dict[str, Any] = {
            "settings": settings,
            "engine": engine,
            "sessionmaker": create_sessionmaker(engine),
            "arq": arq,
            "readiness_checks": [database_check, redis_check, *checks],
        }
        try:
            if extra is None:
                yield state
            else:
                async with extra(state) as more:
                    yield state | more
        finally:
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
    )
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    install_problem_handlers(app)
    app.include_router(health_router(service))
    app.include_router(status_router(service))
    for router in routers:
        app.include_router(router)
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(RequestContextMiddleware, service=service)
    return app
