"""The FastAPI fast path: a route's `require(...)` runs as a plain wrapper around its handler instead of
a FastAPI sub-dependency, and its `Access` is handed to the endpoint parameter that declared it."""

from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, _effective_route_context_var, request_response
from starlette.responses import Response

from kepler_kit.access.authentication import ServiceAuthenticator
from kepler_kit.access.authorization import authorize, request_namespace
from kepler_kit.access.grants import Access
from kepler_kit.permissions import Action

_ACCESS: ContextVar[Access | None] = ContextVar("kepler_access", default=None)


def install_permission_check(route: APIRoute) -> None:
    """Runs the route's `require(...)` as a plain wrapper around its handler instead of a FastAPI
    sub-dependency (which costs ~10 µs of dependency solving per request here) and hands the `Access` to
    the endpoint parameter that declared it. Idempotent: routers are module singletons."""
    if getattr(route, "kepler_action", None) is not None:
        return
    action = _declared(route.dependant)
    route.kepler_action = action  # type: ignore[attr-defined]
    if action is None or action == "public":
        return
    build, checked = route.get_route_handler, Action(action)

    def get_route_handler() -> Callable[[Request], Coroutine[Any, Any, Response]]:
        # FastAPI builds a handler per inclusion, from the dependant it keeps for that inclusion
        # (it documents this as the moment integrations may adjust it): lift the check out of that one.
        context = _effective_route_context_var.get()
        _lift(
            context.dependant if context is not None and context.original_route is route else route.dependant
        )
        handler = build()

        async def guarded(request: Request) -> Response:
            authenticator = request.scope["state"].get("authenticator")
            access = (
                authenticator.granted(request.scope, checked, request_namespace(request))
                if type(authenticator) is ServiceAuthenticator
                else None
            )
            token = _ACCESS.set(access or await authorize(request, checked))

            try:
                return await handler(request)
            finally:
                _ACCESS.reset(token)

        return guarded

    route.get_route_handler = get_route_handler  # type: ignore[method-assign]
    route.app = request_response(get_route_handler())


def _declaration(dependant: Dependant) -> Dependant | None:
    """The `require(...)`/`public()` sub-dependency among the route's own dependencies."""
    return next((d for d in dependant.dependencies if getattr(d.call, "kepler_action", None)), None)


def _declared(dependant: Dependant) -> str | None:
    found = _declaration(dependant)
    return str(found.call.kepler_action) if found is not None else None  # type: ignore[union-attr]


def _lift(dependant: Dependant) -> None:
    """Removes the permission dependency and passes the wrapper's `Access` to its parameter instead."""
    found = _declaration(dependant)
    if found is None:
        return  # already lifted
    dependant.dependencies.remove(found)
    endpoint, name = dependant.call, found.name
    if endpoint is None or name is None:  # router-level `dependencies=[require(...)]`: nothing to pass on
        return

    async def call(**values: Any) -> Any:
        return await endpoint(**values, **{name: _ACCESS.get()})

    dependant.call = call
