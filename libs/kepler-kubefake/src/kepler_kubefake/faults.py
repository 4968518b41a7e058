"""Faults a test injects to prove a client survives what real clusters do: expired watches, dropped
connections, slow answers and 5xx. Each fault fires a bounded number of times on requests whose path
contains `path`."""

from dataclasses import dataclass


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


Fault = WatchGone | DropWatch | Delay | ServerError


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

    def _consume(self, fault: Fault) -> None:
        if fault.times is None:
            return
        fault.times -= 1
        if fault.times <= 0:
            self._active.remove(fault)
