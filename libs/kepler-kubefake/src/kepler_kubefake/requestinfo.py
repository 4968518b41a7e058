"""What the apiserver's `RequestInfoFactory` makes of a request (`staging/src/k8s.io/apiserver/pkg/endpoints/
request/requestinfo.go`): the verb as authorization names it, and the resource, subresource, namespace and
name. RBAC denials and throttling are keyed on it."""

from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class RequestInfo:
    verb: str
    group: str
    resource: str  # plural
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @property
    def qualified_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "GET": "get", "HEAD": "get"}


def verb_of(method: str, has_name: bool, query: object) -> str:
    """GET on a collection is `list`, `watch=true` is `watch`, DELETE on a collection `deletecollection`."""
    watching = (getattr(query, "get", lambda _: None)("watch") or "").lower() in ("1", "true")
    if method in ("GET", "HEAD") and watching:
        return "watch"
    if method in ("GET", "HEAD") and not has_name:
        return "list"
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    return _VERBS.get(method, method.lower())


def request_info(request: web.Request) -> RequestInfo | None:
    """The resource a `/api/...` or `/apis/...` path names, or None for other paths (discovery, health)."""
    parts = request.path.strip("/").split("/")
    if parts[0] == "api" and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        namespace = rest[1]  # a Namespace object is in its own namespace, for authorization
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    verb = verb_of(request.method, bool(name), request.query)
    return RequestInfo(verb, group, rest[0], sub, namespace, name)
