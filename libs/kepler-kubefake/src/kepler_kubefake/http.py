"""The HTTP face of the fake: URL parsing, query parameters, bodies, auth, faults and the request log."""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from kepler_kubefake import discovery, errors
from kepler_kubefake.faults import Delay, Faults, Forbid, Reject, ServerError, Throttle
from kepler_kubefake.kinds import Obj, Registry
from kepler_kubefake.patches import APPLY_PATCH
from kepler_kubefake.requestinfo import RequestInfo, request_info
from kepler_kubefake.resources import Api, Target, WriteOptions
from kepler_kubefake.selectors import matcher
from kepler_kubefake.watch import WatchParams, WatchSettings, serve_watch

log = logging.getLogger("kepler_kubefake.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY = web.RequestKey("kubefake.body", object)
_HEALTH = ("/healthz", "/readyz", "/livez")
_PUBLIC = (*_HEALTH, "/version")  # what anonymous users may read on a default cluster (public-info-viewer)
MAX_REQUEST_BODY = 3 * 1024 * 1024  # the apiserver's MaxRequestBodyBytes
_5XX_REASONS = {500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout", 429: "TooManyRequests"}


@dataclass(slots=True)
class RecordedRequest:
    """One request as the fake saw it, so a test can assert how a client talked (e.g. that it used SSA)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    field_manager: str | None
    body: Any = None
    status: int = 0
    at: float = field(default_factory=time.monotonic)  # when it arrived (`time.monotonic()`)
    verb: str = ""  # as authorization names it (get, list, watch, create, ...); "" for non-resource paths


@dataclass(slots=True)
class Frontend:
    api: Api
    registry: Registry
    faults: Faults
    watch_settings: WatchSettings
    token: str | None = None
    anonymous: bool = False
    server_address: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        q = request.query
        record = RecordedRequest(
            request.method, request.path, dict(q), request.content_type, q.get("fieldManager")
        )
        self.requests.append(record)
        info = request_info(request)
        record.verb = info.verb if info else ""
        try:
            self._authenticate(request)
            await self._inject(request)
            if info is not None:
                self._deny(request, info)
            raw = await request.read()
            if len(raw) > MAX_REQUEST_BODY:
                raise errors.request_entity_too_large(MAX_REQUEST_BODY)
            record.body = request[BODY] = _parse_body(raw, request.content_type)
            response = await handler(request)
        except Throttled as exc:
            response = exc.response
        except errors.ApiError as exc:
            response = _json(exc.status(), exc.code)
        except Exception as exc:
            log.exception("kubefake failed on %s %s", request.method, request.path)
            response = _json(errors.status_object(500, "InternalError", f"kubefake: {exc!r}"), 500)
        record.status = response.status
        return response

    def _authenticate(self, request: web.Request) -> None:
        """With a token required, a wrong one is 401 on every path, `/version` and `/healthz` included (the
        authentication filter runs before anything else). A missing one is 401 too, as with
        `--anonymous-auth=false`; with `anonymous` it is `system:anonymous`, who may read only `/version`
        and the health checks (public-info-viewer) and is refused (403) elsewhere."""
        if not self.token:
            return
        given = request.headers.get("Authorization")
        if given == f"Bearer {self.token}":
            return
        if given is None and self.anonymous:
            if request.path.rstrip("/") not in _PUBLIC:
                raise errors.ApiError(
                    403,
                    "Forbidden",
                    f'forbidden: User "system:anonymous" cannot {request.method.lower()} path '
                    f'"{request.path}"',
                )
            return
        raise errors.unauthorized()

    def _deny(self, request: web.Request, info: RequestInfo) -> None:
        """Injected API Priority and Fairness rejections (429), then RBAC denials (403): the order of the
        apiserver's filter chain."""
        throttle = self.faults.take_denial(
            Throttle, info.verb, info.full_resource, info.namespace, request.path
        )
        if isinstance(throttle, Throttle):
            raise Throttled(throttle)
        forbid = self.faults.take_denial(Forbid, info.verb, info.full_resource, info.namespace, request.path)
        if isinstance(forbid, Forbid):
            raise errors.rbac_forbidden(
                info.qualified_resource,
                info.group,
                info.full_resource,
                info.name,
                info.verb,
                info.namespace,
                forbid.user,
            )

    async def _inject(self, request: web.Request) -> None:
        delay = self.faults.take(Delay, request.method, request.path)
        if isinstance(delay, Delay):
            await asyncio.sleep(delay.seconds)
        failure = self.faults.take(ServerError, request.method, request.path)
        if isinstance(failure, ServerError):
            reason = _5XX_REASONS.get(failure.status, "InternalError")
            raise errors.ApiError(
                failure.status, reason, f"kubefake: injected {failure.status} for {request.path}"
            )
        rejection = (
            self.faults.take(Reject, request.method, request.path) if request.method in _WRITES else None
        )
        if isinstance(rejection, Reject):
            details = {"causes": rejection.causes} if rejection.causes else {}
            raise errors.ApiError(rejection.status, rejection.reason, rejection.message, details)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in _HEALTH:
            return web.Response(text="ok")
        document = self._discovery(path)
        if document is not None:
            return _json(document)
        return await self._resource(request, self._target(path))

    def _discovery(self, path: str) -> Obj | None:
        parts = path.strip("/").split("/")
        if path == "/version":
            return discovery.version_info()
        if path == "/api":
            return discovery.api_versions(self.server_address)
        if path == "/apis":
            return discovery.api_group_list(self.registry)
        if parts[0] == "api" and len(parts) == 2:
            return discovery.api_resource_list(self.registry, "", parts[1]) or _raise(
                errors.page_not_found(path)
            )
        if parts[0] == "apis" and len(parts) == 2:
            return discovery.api_group(self.registry, parts[1]) or _raise(errors.page_not_found(path))
        if parts[0] == "apis" and len(parts) == 3:
            return discovery.api_resource_list(self.registry, parts[1], parts[2]) or _raise(
                errors.page_not_found(path)
            )
        return None

    def _target(self, path: str) -> Target:
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) > 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) > 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.page_not_found(path)
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and self.registry.by_path(group, version, rest[2]):
            namespace, rest = rest[1], rest[2:]
        kind = self.registry.by_path(group, version, rest[0])
        if kind is None or len(rest) > 3 or (namespace is not None and not kind.namespaced):
            raise errors.page_not_found(path)
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if (sub and sub not in kind.subresources) or (kind.namespaced and name and namespace is None):
            raise errors.page_not_found(path)
        storage = self.registry.storage(kind)
        return Target(storage, version, namespace, name, sub, kind if storage is not kind else None)

    async def _resource(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        if request.method == "GET" and t.name is None:
            return await self._list(request, t)
        if request.method == "GET":
            return _json(self.api.read(t))
        body = request[BODY]
        opts = self._options(request)
        if request.method == "POST" and t.name is None:
            return _json(self.api.create(t, body, opts), 201)
        if request.method == "PUT" and t.name:
            return _json(self.api.replace(t, body, opts))
        if request.method == "PATCH" and t.name:
            obj, code = self.api.patch(t, body, request.content_type, opts)
            return _json(obj, code)
        if request.method == "DELETE":
            options = (body if isinstance(body, dict) else {}) | _delete_query(q)
            if t.name:
                return _json(self.api.delete(t, options, opts))
            return _json(
                self.api.delete_collection(
                    t, matcher(q.get("labelSelector"), q.get("fieldSelector")), options, opts
                )
            )
        raise errors.method_not_allowed(request.method, request.path)

    async def _list(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        match = matcher(q.get("labelSelector"), q.get("fieldSelector"))
        if _truthy(q.get("watch")):
            timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
            params = WatchParams(q.get("resourceVersion"), timeout, _truthy(q.get("allowWatchBookmarks")))
            return await serve_watch(request, self.api, t, match, params, self.watch_settings, self.faults)
        limit = int(q["limit"]) if q.get("limit") else None
        return _json(self.api.list_objects(t, match, limit, q.get("continue")))

    def _options(self, request: web.Request) -> WriteOptions:
        """The field manager: the query parameter, else (not for apply) the User-Agent's product, as the
        real server."""
        q = request.query
        manager = q.get("fieldManager") or ""
        if not manager and request.content_type != APPLY_PATCH:
            manager = request.headers.get("User-Agent", "unknown").split("/", 1)[0]
        dry_run = "All" in q.getall("dryRun", [])
        return WriteOptions(manager, dry_run, _truthy(q.get("force")))


_WRITES = frozenset({"POST", "PUT", "PATCH"})


class Throttled(Exception):
    """An APF rejection: plain text and a Retry-After header, not a Status (`filters/priority-and-fairness.go`
    → `tooManyRequests`), unless the fault asks for the Status form."""

    def __init__(self, fault: Throttle) -> None:
        headers = {"Retry-After": str(fault.retry_after)}
        if fault.as_status:
            status = errors.too_many_requests(fault.retry_after)
            self.response = _json(status.status(), 429)
            self.response.headers.update(headers)
        else:
            self.response = web.Response(
                status=429, text="Too many requests, please try again later.\n", headers=headers
            )
        super().__init__("throttled")


def _raise(exc: Exception) -> Obj:
    raise exc


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


def _delete_query(q: Any) -> Obj:
    return {name: q[name] for name in ("propagationPolicy", "gracePeriodSeconds") if q.get(name)}


def _json(obj: Obj, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(obj, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML without timestamp resolution: dates stay strings, as they do in the API server's decoder."""


_YamlLoader.yaml_implicit_resolvers = {
    key: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    try:
        if content_type == APPLY_PATCH and not raw.lstrip().startswith(b"{"):
            return yaml.load(raw, Loader=_YamlLoader)  # noqa: S506  (a SafeLoader: plain YAML types only)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc
