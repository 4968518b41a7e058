"""Merge the services' OpenAPI documents into the one Kepler API document (pure functions over dicts).

Rules, in the order they apply:
- paths: each path belongs to exactly one service. A path two services define, or a path the gateway
  would route to a different service than the one documenting it, is a conflict: it is reported and
  left out (the first definer wins a duplicate).
- components (schemas, responses, parameters, ...): equal names with equal content are shared (this
  is how every service's `Problem` becomes the one shared error schema). A different definition under
  a taken name is renamed `<Service>_<Name>` and that service's `$ref`s are rewritten; this repeats
  until stable, since renaming one schema changes every schema that refers to it.
- operationIds: an id used by more than one service is prefixed with each service's camelCase name.
- tags: an operation keeps its tags only if they are all domain tags; otherwise it gets the domain
  tag of its path. The document lists the domain tags, with descriptions, in a fixed order.
- proxied operations (every source but the gateway's own, `own`) also answer 502 and 504 when the
  service fails or does not answer in time.
Services whose document could not be fetched are listed under `x-kepler-unavailable`.
"""

import copy
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Document = dict[str, Any]
ComponentKey = tuple[str, str]  # (section, name), e.g. ("schemas", "Problem")

TITLE = "Kepler API"
DOMAIN_TAGS: dict[str, str] = {
    "namespaces": "Namespaces: the unit of tenancy and access control.",
    "apps": "Applications in a namespace: repository, build settings, deployments, releases, pods, scaling.",
    "builds": "Image builds of an application and their logs.",
    "alerts": "Alerts, alert rules, silences and notification channels of a namespace.",
    "terminal": "Interactive shells (WebSocket) into an application's pods, and their log streams.",
    "system": "Platform status and the health of each service.",
    "webhooks": "Inbound webhooks from Git hosts, Jenkins and Alertmanager.",
    "auth": "Signing in and out, sessions, API tokens and the caller's own account.",
    "users": "Platform users, for administrators.",
    "audit": "Who did what, when, and with which outcome.",
    "clusters": "The Kubernetes clusters Kepler deploys to, for administrators.",
    "inbox": "Your notifications (events of the namespaces you answer for, and those you follow) and rules.",
    "announcements": "Messages from platform admins to everyone, or from namespace owners to their members.",
    "events": "The activity feed: what happened on the platform, listed and followed live (SSE).",
}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_REF_PREFIX = "#/components/"
PROXY_ERRORS = {502: "Upstream service failed", 504: "Upstream service timed out"}


@dataclass
class MergeResult:
    document: Document
    conflicts: list[str] = field(default_factory=list)
    renamed_components: dict[str, dict[str, str]] = field(default_factory=dict)  # service → {old ref: new}
    renamed_operations: dict[str, dict[str, str]] = field(default_factory=dict)  # service → {old id: new}
    unavailable: list[str] = field(default_factory=list)


def pascal(service: str) -> str:
    return "".join(part.capitalize() for part in service.replace("_", "-").split("-"))


def camel(service: str) -> str:
    name = pascal(service)
    return name[:1].lower() + name[1:]


def rewrite_refs(node: Any, renames: Mapping[ComponentKey, str]) -> Any:
    """A copy of `node` whose `$ref`s (and discriminator mappings) follow `renames`."""
    if not renames:
        return node
    if isinstance(node, dict):
        out = {key: rewrite_refs(value, renames) for key, value in node.items()}
        if isinstance(ref := node.get("$ref"), str):
            out["$ref"] = _renamed_ref(ref, renames)
        mapping = node.get("mapping")
        if "propertyName" in node and isinstance(mapping, dict):
            out["mapping"] = {
                k: _renamed_ref(v, renames) if isinstance(v, str) else v for k, v in mapping.items()
            }
        return out
    if isinstance(node, list):
        return [rewrite_refs(item, renames) for item in node]
    return node


def _renamed_ref(ref: str, renames: Mapping[ComponentKey, str]) -> str:
    if not ref.startswith(_REF_PREFIX):
        return ref
    section, _, rest = ref.removeprefix(_REF_PREFIX).partition("/")
    name, slash, tail = rest.partition("/")
    new = renames.get((section, name))
    return f"{_REF_PREFIX}{section}/{new}{slash}{tail}" if new else ref


def component_renames(merged: Document, incoming: Document, service: str) -> dict[ComponentKey, str]:
    """Names in `incoming` that must change so they cannot clash with what `merged` already holds."""
    renames: dict[ComponentKey, str] = {}
    changed = True
    while changed:
        changed = False
        for section, items in incoming.items():
            for name, value in items.items():
                key = (section, name)
                existing = merged.get(section, {}).get(name)
                if key in renames or existing is None or existing == rewrite_refs(value, renames):
                    continue
                renames[key] = _free_name(merged, incoming, section, f"{pascal(service)}_{name}")
                changed = True
    return renames


def _free_name(merged: Document, incoming: Document, section: str, wanted: str) -> str:
    taken = merged.get(section, {}).keys() | incoming.get(section, {}).keys()
    name, n = wanted, 1
    while name in taken:
        n += 1
        name = f"{wanted}{n}"
    return name


class _Merger:
    def __init__(
        self,
        tag_for: Callable[[str], str | None],
        owner_of: Callable[[str], str] | None,
        own: str | None,
    ) -> None:
        self.tag_for = tag_for
        self.owner_of = owner_of
        self.own = own
        self.result = MergeResult(document=_skeleton())
        self.path_owner: dict[str, str] = {}

    @property
    def doc(self) -> Document:
        return self.result.document

    def add(self, service: str, source: Document) -> None:
        components = {k: v for k, v in source.get("components", {}).items() if isinstance(v, dict)}
        renames = component_renames(self.doc["components"], components, service)
        if renames:
            self.result.renamed_components[service] = {
                f"{section}/{old}": f"{section}/{new}" for (section, old), new in renames.items()
            }
        self._add_components(rewrite_refs(components, renames), renames)
        for path, item in rewrite_refs(source.get("paths", {}), renames).items():
            self._add_path(service, path, item)
        for name, item in rewrite_refs(source.get("webhooks", {}), renames).items():
            self.doc.setdefault("webhooks", {}).setdefault(name, item)

    def _add_components(self, components: Document, renames: Mapping[ComponentKey, str]) -> None:
        for section, items in components.items():
            target = self.doc["components"].setdefault(section, {})
            for name, value in items.items():
                target.setdefault(renames.get((section, name), name), value)

    def _add_path(self, service: str, path: str, item: Document) -> None:
        if (first := self.path_owner.get(path)) is not None:
            self.result.conflicts.append(f"path {path} is defined by both {first} and {service}")
        elif self.owner_of and (routed := self.owner_of(path)) != service:
            self.result.conflicts.append(
                f"path {path} is documented by {service} but the gateway routes it to {routed}"
            )
        else:
            self.path_owner[path] = service
            self.doc["paths"][path] = item
            if self.own is not None and service != self.own:
                _proxy_errors(item)

    def finish(self) -> MergeResult:
        self._unique_operation_ids()
        self._domain_tags()
        if self.result.unavailable:
            self.doc["x-kepler-unavailable"] = list(self.result.unavailable)
        if self.result.conflicts:
            self.doc["x-kepler-conflicts"] = list(self.result.conflicts)
        return self.result

    def _operations(self) -> list[tuple[str, str, Document]]:
        """(service, path, operation) for every operation in the merged paths."""
        return [
            (self.path_owner[path], path, item[method])
            for path, item in self.doc["paths"].items()
            for method in HTTP_METHODS
            if isinstance(item.get(method), dict)
        ]

    def _unique_operation_ids(self) -> None:
        operations = self._operations()
        counts = Counter(op["operationId"] for _, _, op in operations if "operationId" in op)
        taken = set(counts)
        for service, _, op in operations:
            old = op.get("operationId")
            if old is None or counts[old] < 2:
                continue
            new = _free_id(f"{camel(service)}{old[:1].upper()}{old[1:]}", taken)
            op["operationId"] = new
            taken.add(new)
            self.result.renamed_operations.setdefault(service, {})[old] = new

    def _domain_tags(self) -> None:
        for _, path, op in self._operations():
            tags = op.get("tags") or []
            if not tags or any(tag not in DOMAIN_TAGS for tag in tags):
                op["tags"] = [self.tag_for(path) or "system"]


def _proxy_errors(item: Document) -> None:
    operations = (item[method] for method in HTTP_METHODS if isinstance(item.get(method), dict))
    for responses in (op["responses"] for op in operations if isinstance(op.get("responses"), dict)):
        for status, description in PROXY_ERRORS.items():
            responses.setdefault(str(status), _problem_response(description))


def _problem_response(description: str) -> Document:
    schema = {"$ref": f"{_REF_PREFIX}schemas/Problem"}
    return {"description": description, "content": {"application/problem+json": {"schema": schema}}}


def _free_id(wanted: str, taken: set[str]) -> str:
    name, n = wanted, 1
    while name in taken:
        n += 1
        name = f"{wanted}{n}"
    return name


def _skeleton() -> Document:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": "0.1.0",
            "description": "The public API of Kepler, merged by the gateway from its services' documents.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": text} for name, text in DOMAIN_TAGS.items()],
        "paths": {},
        "components": {},
    }


def merge_openapi(
    sources: Mapping[str, Document | None],
    *,
    tag_for: Callable[[str], str | None] = lambda _: None,
    owner_of: Callable[[str], str] | None = None,
    own: str | None = None,
) -> MergeResult:
    """Merge `sources` (service name → its document, or None when it could not be fetched), in order.

    `owner_of(path)` names the service the gateway sends a path to (the gateway's own name for paths
    it answers itself); a path documented by any other service is a conflict. Without it, every path
    is accepted from whichever service documents it. `tag_for(path)` gives a path's domain tag.
    `own` names the gateway's own source: the operations of every other source are proxied.
    """
    merger = _Merger(tag_for, owner_of, own)
    for service, source in sources.items():
        if source is None:
            merger.result.unavailable.append(service)
        else:
            merger.add(service, copy.deepcopy(source))
    return merger.finish()
