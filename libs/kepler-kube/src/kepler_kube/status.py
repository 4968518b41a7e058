"""Reading the API server's error answers: every non-2xx carries a `Status` (`kind: Status, status: Failure,
reason, code, message, details.causes[]`), in the HTTP body or in a watch's ERROR event. Which answers are
worth another try, and which typed error each one is.

Sources: apimachinery `pkg/api/errors/errors.go` (reasons, codes, `NewTooLargeResourceVersionError`:
504 Timeout with cause `ResourceVersionTooLarge`), `pkg/apis/meta/v1/types.go` (`StatusCause.Type` is
serialised as `reason`), API Priority and Fairness (429 with `Retry-After`).
"""

import json
from dataclasses import dataclass
from typing import Any

from kepler_kube.base import (
    Cause,
    ClusterUnavailable,
    CredentialsRefused,
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
)

RETRY_AFTER_CAP = (
    5.0  # seconds: a longer wait is the caller's to decide (a 503 with Retry-After, a job retry)
)
BACKOFF_BASE = 0.25
RETRYABLE = frozenset({429, 500, 502, 503, 504})
# A server-side apply with a field the schema lacks answers 500 (kubernetes#122480): it never succeeds.
_TYPED_PATCH = "failed to create typed patch object"
_ERRORS: dict[int, type[KubeError]] = {
    400: KubeInvalid,
    403: KubeForbidden,
    404: KubeNotFound,
    409: KubeConflict,
    413: KubeInvalid,
    422: KubeInvalid,
}


@dataclass(frozen=True)
class Answer:
    """An error answer: the HTTP status (or the Status `code` of an ERROR event) and what its Status said."""

    status: int
    reason: str
    message: str
    causes: tuple[Cause, ...] = ()
    retry_after: float | None = None

    @classmethod
    def of_status(cls, status: Any, http_status: int = 0, http_reason: str = "") -> "Answer":
        """From a decoded Status; anything else (a proxy's HTML page) keeps the HTTP status alone."""
        body: dict[str, Any] = status if isinstance(status, dict) else {}
        found = body.get("details")
        details: dict[str, Any] = found if isinstance(found, dict) else {}
        causes = tuple(
            Cause(
                reason=_text(c.get("reason")),
                message=_text(c.get("message")) or "",
                field=_text(c.get("field")),
            )
            for c in details.get("causes") or []
            if isinstance(c, dict)
        )
        code = body.get("code")
        retry = details.get("retryAfterSeconds")
        return cls(
            status=code if isinstance(code, int) and not http_status else http_status or 500,
            reason=_text(body.get("reason")) or http_reason or "Unknown",
            message=_text(body.get("message")) or http_reason or "no message",
            causes=causes,
            retry_after=float(retry) if isinstance(retry, int) and retry > 0 else None,
        )

    @classmethod
    def of_response(cls, status: int, reason: str | None, retry_after: str | None, body: bytes) -> "Answer":
        try:
            decoded = json.loads(body) if body else None
        except ValueError:
            decoded = None
        answer = cls.of_status(decoded, status, reason or "")
        seconds = _seconds(retry_after)
        if seconds is not None:
            answer = Answer(answer.status, answer.reason, answer.message, answer.causes, seconds)
        return answer

    @property
    def expired(self) -> bool:
        """The watched version is out of the server's window, either end: re-list."""
        too_large = self.status == 504 and any(c.reason == "ResourceVersionTooLarge" for c in self.causes)
        return self.status == 410 or too_large

    @property
    def never_succeeds(self) -> bool:
        return self.status == 500 and _TYPED_PATCH in self.message


@dataclass(frozen=True)
class Retry:
    seconds: float


def retry_of(answer: Answer, attempt: int) -> Retry | None:
    """How long to wait before trying again, or None when trying again cannot help."""
    if answer.status not in RETRYABLE or answer.never_succeeds or answer.expired:
        return None
    backoff = BACKOFF_BASE * 2 ** (attempt - 1)
    return Retry(min(answer.retry_after, RETRY_AFTER_CAP) if answer.retry_after else backoff)


def error_of(cluster: str, answer: Answer, retry: Retry | None) -> Exception:
    """The typed error for an answer Kepler will not (or no longer) retry."""
    said = f"the API server answered {answer.status} {answer.reason}: {answer.message}"
    if answer.status == 401:
        return CredentialsRefused(cluster, f"{answer.status} {answer.reason}")
    if answer.never_succeeds:
        return KubeInvalid(cluster, answer.status, answer.reason, answer.message, answer.causes)
    if answer.status in RETRYABLE:
        return ClusterUnavailable(cluster, said, answer.retry_after or (retry.seconds if retry else None))
    error = _ERRORS.get(answer.status, KubeError)
    return error(cluster, answer.status, answer.reason, answer.message, answer.causes)


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and value != "" else None


def _seconds(header: str | None) -> float | None:
    try:
        seconds = float(header) if header else None
    except ValueError:
        return None  # an HTTP-date: API Priority and Fairness sends seconds; wait the backoff instead
    return seconds if seconds is not None and seconds >= 0 else None
