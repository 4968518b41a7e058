"""Every error a service can produce leaves as application/problem+json."""

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kepler_kit.context import current_request_id
from kepler_kit.errors import (
    PROBLEM_JSON,
    Conflict,
    FieldError,
    KeplerError,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from kepler_kit.faults import is_concurrent_conflict, is_data_error, is_transient
from kepler_kit.logging import get_logger

log = get_logger(__name__)
RETRY_AFTER_SECONDS = 5  # about one sweep period: long enough for a restarted Postgres or Redis
_BY_STATUS: dict[int, type[KeplerError]] = {404: NotFound, 405: MethodNotAllowed}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def problem_response(
    error: KeplerError, instance: str | None, headers: dict[str, str] | None = None
) -> Response:
    body = error.problem(instance, current_request_id()).model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=error.status, media_type=PROBLEM_JSON, headers=headers)


async def _kepler_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeplerError)  # noqa: S101  (registered for this class; narrows the type)
    return problem_response(exc, request.url.path, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101  (registered for this class; narrows the type)
    kind = _BY_STATUS.get(exc.status_code)
    error = kind(_detail_text(exc.detail)) if kind else _generic(exc.status_code, exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request) or headers.get("Allow", "")
    return problem_response(error, request.url.path, headers=headers)


def _allowed(request: Request) -> str:
    """Every documented method of the path: Starlette's 405 names only the first route matching it, and
    FastAPI makes one route per method (RFC 9110 §15.5.6: `Allow` lists the target's methods)."""
    path = getattr(request.scope.get("route"), "path_format", None)
    item = request.app.openapi().get("paths", {}).get(path, {}) if path else {}
    return ", ".join(sorted(method.upper() for method in item if method in _METHODS))


def _detail_text(detail: Any) -> str | None:
    return None if detail in (None, "Not Found", "Method Not Allowed") else str(detail)


def _generic(status: int, detail: Any) -> KeplerError:
    error = KeplerError(str(detail))
    error.status, error.code, error.title = status, f"http-{status}", str(detail)
    return error


def field_errors(errors: Any) -> list[FieldError]:
    return [FieldError(loc=list(e["loc"]), msg=e["msg"], type=e["type"]) for e in errors]


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101  (registered for this class; narrows the type)
    fields = field_errors(exc.errors())
    detail = "; ".join(f"{'.'.join(map(str, f.loc))}: {f.msg}" for f in fields[:5])
    error = ValidationFailed(detail, errors=[f.model_dump() for f in fields])
    return problem_response(error, request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KeplerError, _kepler_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


def problem_for_exception(exc: BaseException) -> KeplerError | None:
    """The 4xx/503 an exception that is not a `KeplerError` deserves, or None for a genuine 500.

    Postgres or Redis unreachable → 503 with `Retry-After`; a value Postgres refused → 422; a race lost to a
    concurrent request (a constraint, a deadlock) → 409. Any ASGI path
    that catches exceptions itself (the gateway's proxy) asks this before answering 500."""
    if is_transient(exc):
        return ServiceUnavailable(
            "A database or cache Kepler depends on is unreachable or timed out; try again shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if is_data_error(exc):
        return ValidationFailed(
            "A value in the request cannot be stored (for example a NUL character or a number out of range)."
        )
    if is_concurrent_conflict(exc):
        return Conflict(
            "A concurrent request changed the same thing first (a name was just taken, or something this "
            "depends on was just deleted); read the current state and retry if the change still applies."
        )
    return None


class UnhandledErrorMiddleware:
    """Turns an unexpected exception into a problem that leaks nothing, and logs it once: 503 when a
    dependency is down, 422 for a value the database refused, otherwise 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            error = problem_for_exception(exc)
            if error is None:
                log.exception("unhandled_error", path=scope["path"], method=scope["method"])
                error = KeplerError("The server could not complete the request; it has been logged.")
            else:
                log.warning(
                    "request_failed", path=scope["path"], status=error.status, error=type(exc).__name__
                )
            if started:
                raise
            await problem_response(error, scope["path"], headers=error.headers)(scope, receive, send)
