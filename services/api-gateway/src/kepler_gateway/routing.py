"""Which service owns which `/api/v1/...` path: one ordered table, compiled to one regex.

The table is the single place to edit when a service gains a path family. Patterns are matched in
order, most specific first, so a later, broader pattern (`/api/v1/namespaces/**`) only catches what
nothing above it claimed. Syntax: `{name}` is exactly one path segment; a trailing `/**` also matches
the bare prefix and anything below it. Everything compiles to one alternation whose `lastgroup` names
the winning route, so resolving a path is a single `re.match` on the hot path.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kepler_kit.contracts import Service


@dataclass(frozen=True, slots=True)
class Route:
    """A path family owned by one service; `pattern` doubles as the metrics label (bounded cardinality)."""

    pattern: str
    service: Service
    tag: str


_NS = "/api/v1/namespaces/{ns}"
_APP = f"{_NS}/apps/{{app}}"
_POD = f"{_APP}/pods/{{pod}}"

ROUTES: tuple[Route, ...] = (
    *(Route(f"/api/v1/status/{svc.value}", svc, "system") for svc in Service),
    Route("/api/v1/webhooks/gitlab", Service.BUILD, "webhooks"),
    Route("/api/v1/webhooks/github", Service.BUILD, "webhooks"),
    Route("/api/v1/webhooks/jenkins", Service.BUILD, "webhooks"),
    Route("/api/v1/webhooks/alertmanager", Service.ALERT, "webhooks"),
    Route("/api/v1/events/**", Service.ALERT, "events"),
    Route(f"{_POD}/exec", Service.TERMINAL, "terminal"),
    Route(f"{_POD}/logs", Service.TERMINAL, "terminal"),
    Route(f"{_APP}/logs", Service.TERMINAL, "terminal"),
    Route(f"{_APP}/builds/**", Service.BUILD, "builds"),
    Route(f"{_NS}/alerts/**", Service.ALERT, "alerts"),
    Route(f"{_NS}/alert-rules/**", Service.ALERT, "alerts"),
    Route(f"{_NS}/silences/**", Service.ALERT, "alerts"),
    Route(f"{_NS}/channels/**", Service.ALERT, "alerts"),
    Route(f"{_NS}/apps/**", Service.APP, "apps"),
    Route("/api/v1/namespaces/**", Service.APP, "namespaces"),
    Route("/api/v1/clusters/**", Service.APP, "clusters"),
    Route("/api/v1/inbox/**", Service.ALERT, "inbox"),
    Route("/api/v1/announcements/**", Service.ALERT, "announcements"),
)

_PARAM = re.compile(r"\{[^/{}]+\}")


def pattern_regex(pattern: str) -> str:
    """`/a/{x}/b/**` → `/a/[^/]+/b(?:/.*)?` (anchoring is the caller's job)."""
    prefix = pattern.endswith("/**")
    body = pattern.removesuffix("/**") if prefix else pattern
    parts = _PARAM.split(body)
    regex = "[^/]+".join(re.escape(part) for part in parts)
    return regex + "(?:/.*)?" if prefix else regex


class RouteTable:
    """Resolves a request path to its route; `None` means the gateway itself answers (or 404s)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: Sequence[Route] = tuple(routes)
        alternatives = "|".join(f"(?P<r{i}>{pattern_regex(r.pattern)})" for i, r in enumerate(self.routes))
        self._regex = re.compile(rf"(?:{alternatives})\Z", re.DOTALL)
        self._by_group = {f"r{i}": route for i, route in enumerate(self.routes)}

    def resolve(self, path: str) -> Route | None:
        match = self._regex.match(path)
        return self._by_group[match.lastgroup] if match and match.lastgroup else None


DEFAULT_TABLE = RouteTable(ROUTES)
