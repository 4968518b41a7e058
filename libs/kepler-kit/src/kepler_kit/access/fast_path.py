"""The FastAPI fast path: a route's `require(...)` runs as a plain wrapper around its handler instead of
a FastAPI sub-dependency, and its `Access` is handed to the endpoint parameter that declared it."""

import functools
import inspect
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, request_response
from starlette.responses import Response

from kepler_kit.access.authentication import ServiceAuthenticator
from kepler_kit.access.authorization import authorize, request_namespace
from kepler_kit.access.grants import Access
from kepler_kit.permissions import Action

_ACCESS: ContextVar[Access | None] = ContextVar("kepler_access", default=None)


def install_permission_check(route: APIRoute) -> None:
    """Runs the route's `require(...)` as a plain wrapper around its handler instead of a FastAPI
    sub-dependency (which costs ~10 µs of dependency solving per request here) and hands the `Access` to
    the endpoint parameter that declared it. Call it before the route's router is included anywhere.
    Idempotent: routers are module singletons."""
    if getattr(route, "kepler_action", None) is not None:
        return
    found = _declaration(route.dependant)
    action = getattr(found.call, "kepler_action", None) if found is not None else None
    route.kepler_action = action  # type: ignore[attr-defined]
    if found is None or action is None or action == "public":
        return
    _lift(route, found)
    build, checked = route.get_route_handler, Action(str(action))

    def get_route_handler() -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = build()  # FastAPI's, for the route or one inclusion of it

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


def _lift(route: APIRoute, found: Dependant) -> None:
    """Removes the permission dependency from the route, and passes the wrapper's `Access` to the parameter
    that declared it. FastAPI builds the dependant of each inclusion of the route afresh from the route's
    public `endpoint` and `dependencies`, so those lose the check too, not only the route's own dependant."""
    route.dependant.dependencies.remove(found)
    if found.name is None:  # router-level `dependencies=[require(...)]`: nothing to pass on
        route.dependencies = [d for d in route.dependencies if d.dependency is not found.call]
        return
    route.endpoint = route.dependant.call = _passing_access(route.endpoint, found.name)


def _passing_access(endpoint: Callable[..., Any], name: str) -> Callable[..., Any]:
    """`endpoint` without its parameter `name` (FastAPI reads `__signature__`, and resolves annotations
    in the module of the function `__wrapped__`), called with the `Access` as that parameter."""

    @functools.wraps(endpoint)
    async def call(*args: Any, **values: Any) -> Any:
        return await endpoint(*args, **values, **{name: _ACCESS.get()})

    signature = inspect.signature(endpoint)
    kept = [parameter for parameter in signature.parameters.values() if parameter.name != name]
    call.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    return call
