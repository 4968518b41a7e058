"""Per-request context that flows from the gateway to services, jobs and outgoing calls."""

import secrets
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
request_id_var: ContextVar[str | None] = ContextVar("kepler_request_id", default=None)


def new_request_id() -> str:
    return secrets.token_hex(16)


def clean_request_id(value: str | None) -> str:
    """Accept a caller's id only when it is short and printable, so it cannot forge log lines."""
    if value and len(value) <= 128 and value.isascii() and value.isprintable() and " " not in value:
        return value
    return new_request_id()


def current_request_id() -> str | None:
    return request_id_var.get()


def outgoing_headers() -> dict[str, str]:
    """Headers to add to any call we make, so the upstream logs the same request id."""
    rid = request_id_var.get()
    return {REQUEST_ID_HEADER: rid} if rid else {}
