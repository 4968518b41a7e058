"""Faults a test injects to prove a client survives what real clusters do: expired watches, dropped
connections, slow answers, 5xx, RBAC denials and API Priority and Fairness throttling. Each fault fires a
bounded number of times on requests whose path contains `path`; `Forbid` and `Throttle` match the request
as the apiserver's authorizer sees it (verb, resource, namespace)."""

from dataclasses import dataclass, field


@dataclass(slots=True)
class WatchGone:
    """The next watch(es) fail with 410 Gone: an HTTP 410, or an ERROR event with a 410 Status
    (`as_event`)."""

    times: int = 1
    path: str = ""
    as_event: bool | None = None  # None: the server's `gone_mode`


@dataclass(slots=True)
class DropWatch:
    """Watches end after `after_events` events: cut mid-stream (`abrupt`) or closed cleanly like a server
    timeout."""

    after_events: int = 0
    times: int = 1
    path: str = ""
    abrupt: bool = True


@dataclass(slots=True)
class Delay:
    """Requests wait `seconds` before being served; `times=None` keeps delaying until cleared."""

    seconds: float
    times: int | None = None
    path: str = ""
    method: str = ""


@dataclass(slots=True)
class ServerError:
    """The next `times` requests answer `status` (a 5xx Status body), as an overloaded API server would."""

    status: int = 503
    times: int = 1
    path: str = ""
    method: str = ""


@dataclass(slots=True)
class Forbid:
    """An RBAC denial: matching requests answer 403 Forbidden with the authorizer's message. Empty fields
    match anything; `verb` is Kubernetes' (get, list, watch, create, update, patch, delete,
    deletecollection); `resource` is a plural, optionally with its subresource (`deployments/scale`)."""

    verb: str = ""
    resource: str = ""
    namespace: str = ""
    times: int | None = None
    user: str = "system:serviceaccount:kepler:kepler"
    path: str = ""


@dataclass(slots=True)
class Throttle:
    """API Priority and Fairness rejecting requests: 429 with a `Retry-After` header and APF's plain-text
    body (`as_status`: a `TooManyRequests` Status instead, as the storage layer sends)."""

    verb: str = ""
    resource: str = ""
    namespace: str = ""
    times: int | None = 1
    retry_after: int = 1
    as_status: bool = False
    path: str = ""


@dataclass(slots=True)
class Reject:
    """A write refused as a validating admission webhook or a rule the fake does not model would refuse it:
    the next `times` matching writes (POST, PUT, PATCH) answer `status` with this Status. A webhook's denial
    without a code is a 400 whose message starts `admission webhook "<name>" denied the request:`
    (staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/errors/statuserror.go)."""

    status: int = 422
    reason: str = "Invalid"
    message: str = "kubefake: injected rejection"
    causes: list[dict[str, str]] = field(default_factory=list)
    times: int = 1
    path: str = ""
    method: str = ""


Fault = WatchGone | DropWatch | Delay | ServerError | Forbid | Throttle | Reject


class Faults:
    def __init__(self) -> None:
        self._active: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._active.append(fault)

    def clear(self) -> None:
        self._active.clear()

    def take(self, kind: type[Fault], method: str, path: str) -> Fault | None:
        """The first matching fault of `kind`, consuming one of its uses."""
        for fault in self._active:
            if (
                isinstance(fault, kind)
                and fault.path in path
                and getattr(fault, "method", "") in ("", method)
            ):
                self._consume(fault)
                return fault
        return None

    def take_denial(
        self, kind: type[Forbid] | type[Throttle], verb: str, resource: str, namespace: str, path: str
    ) -> Forbid | Throttle | None:
        """The first `Forbid`/`Throttle` matching a resource request, consuming one of its uses."""
        for fault in self._active:
            if isinstance(fault, kind) and _denies(fault, verb, resource, namespace, path):
                self._consume(fault)
                return fault
        return None

    def _consume(self, fault: Fault) -> None:
        if fault.times is None:
            return
        fault.times -= 1
        if fault.times <= 0:
            self._active.remove(fault)


def _denies(fault: Forbid | Throttle, verb: str, resource: str, namespace: str, path: str) -> bool:
    plural = resource.split("/", 1)[0]
    return (
        fault.verb in ("", verb)
        and fault.resource in ("", resource, plural)
        and fault.namespace in ("", namespace)
        and fault.path in path
    )
