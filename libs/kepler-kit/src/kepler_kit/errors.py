"""One error hierarchy, rendered everywhere as RFC 9457 problem+json."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://kepler.dev/problems/"


class FieldError(BaseModel):
    loc: list[str | int] = Field(
        description="Where the value is: body/query/path/header followed by the field path"
    )
    msg: str
    type: str


class Problem(BaseModel):
    """The body of every error response (RFC 9457)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"title": "Problem"})

    type: str = Field(description="URI identifying the problem type")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(None, description="The request path that produced the problem")
    request_id: str | None = None
    errors: list[FieldError] | None = Field(None, description="Field errors, for validation problems")


class KeplerError(Exception):
    status = 500
    code = "internal-error"
    title = "Internal server error"

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def problem(self, instance: str | None, request_id: str | None) -> Problem:
        return Problem(
            type=PROBLEM_TYPE_BASE + self.code,
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            request_id=request_id,
            **self.extra,
        )


class BadRequest(KeplerError):
    status, code, title = 400, "bad-request", "Bad request"


class Unauthorized(KeplerError):
    """Always with the challenge RFC 9110 §15.5.2 requires of a 401 (Bearer, RFC 6750 §3)."""

    status, code, title = 401, "unauthorized", "Authentication required"
    challenge = 'Bearer realm="kepler"'

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": self.challenge, **(headers or {})}, **extra)


class InvalidToken(Unauthorized):
    """A token was presented but is malformed, expired, revoked or not for this service."""

    challenge = 'Bearer realm="kepler", error="invalid_token"'


class Forbidden(KeplerError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(KeplerError):
    status, code, title = 404, "not-found", "Not found"


class MethodNotAllowed(KeplerError):
    status, code, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(KeplerError):
    status, code, title = 409, "conflict", "Conflict"


class ValidationFailed(KeplerError):
    status, code, title = 422, "validation-error", "Request validation failed"


class TooManyRequests(KeplerError):
    status, code, title = 429, "too-many-requests", "Too many requests"


class BadGateway(KeplerError):
    status, code, title = 502, "bad-gateway", "Upstream service failed"


class ServiceUnavailable(KeplerError):
    status, code, title = 503, "service-unavailable", "Service unavailable"


class GatewayTimeout(KeplerError):
    status, code, title = 504, "gateway-timeout", "Upstream service timed out"


# What a caller may get from any operation inside a namespace: 404 too, because a namespace a caller is not a
# member of answers as if it did not exist (and so does an app in it).
NAMESPACE_DENIALS: tuple[type[KeplerError], ...] = (Unauthorized, Forbidden, NotFound)


def error_responses(*errors: type[KeplerError]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each declared error documented with the shared Problem schema."""
    return {err.status: {"model": Problem, "description": err.title} for err in errors}
