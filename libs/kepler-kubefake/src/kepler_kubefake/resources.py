"""The verbs: what create, get, list, replace, patch, apply and delete do to the store, independent of HTTP.

Every client write goes through one pipeline (`_commit`): defaults, field ownership, generation, validation,
and a no-op check, so an identical re-apply keeps its resourceVersion like on a real cluster.
"""

import base64
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kepler_kubefake import deletion, errors
from kepler_kubefake.apply import ApplyRequest, apply_create, apply_to
from kepler_kubefake.checks import validate_object
from kepler_kubefake.clock import Clock
from kepler_kubefake.defaults import apply_defaults
from kepler_kubefake.eventforms import core_view, to_core, to_events_v1
from kepler_kubefake.fields import FlatObject, flatten
from kepler_kubefake.kinds import Obj, Registry, ResourceKind, api_version, clone
from kepler_kubefake.managed import Entry, prune, read_entries, record_update, same_ownership, write_entries
from kepler_kubefake.patches import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from kepler_kubefake.schemas import undeclared_fields
from kepler_kubefake.selectors import Matcher
from kepler_kubefake.store import Store

CONTROLLER = "kube-controller-manager"
MAX_STORED_BYTES = 1536 * 1024  # etcd's default --max-request-bytes
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
Ownership = Callable[[FlatObject], list[Entry]]


@dataclass(frozen=True, slots=True)
class Target:
    """What a URL names: a kind at a version, maybe a namespace, an object and a subresource."""

    kind: ResourceKind
    version: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    view: ResourceKind | None = None  # served through another group (events.k8s.io Events), converted

    @property
    def api_version(self) -> str:
        return api_version((self.view or self.kind).group, self.version)


@dataclass(frozen=True, slots=True)
class WriteOptions:
    manager: str
    dry_run: bool = False
    force: bool = False


def _initial_status(kind: ResourceKind, obj: Obj) -> Obj | None:
    """The status a freshly created object has before any controller looks at it."""
    if not kind.has_status:
        return None
    if kind.kind == "Namespace":
        return {"phase": "Active"}
    if kind.kind == "Pod":
        return {"phase": "Pending", "qosClass": "BestEffort"}
    if kind.kind == "PersistentVolumeClaim":
        spec = obj.get("spec") or {}
        capacity = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        return {
            "phase": "Bound",
            "accessModes": spec.get("accessModes") or [],
            "capacity": {"storage": capacity},
        }
    if kind.kind == "Service":
        return {"loadBalancer": {}}
    return {}


def _client_owned(kind: ResourceKind, obj: Obj) -> Obj:
    """What a main-resource write is validated on: status belongs to controllers where it is a subresource."""
    return {k: v for k, v in obj.items() if k != "status"} if kind.has_status else obj


def _without_managed(obj: Obj) -> Obj:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}


def _carry_allocated(kind: ResourceKind, old: Obj, new: Obj) -> None:
    """A Service keeps its allocated cluster IP when an update leaves it empty, as the real registry does."""
    if kind.kind == "Service":
        spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
        for name in ("clusterIP", "clusterIPs"):
            if not spec.get(name) and name in old_spec:
                spec[name] = old_spec[name]


class Api:
    def __init__(self, registry: Registry, store: Store, clock: Clock) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self.namespace_kind = registry.named("Namespace")
        # Replaced by NamespaceLifecycle (namespaces.py) with the asynchronous, Terminating-first deletion.
        self.terminate_namespace: Callable[[Obj], Obj] = self._terminate_namespace

    # ---- reads

    def existing(self, t: Target) -> Obj:
        obj = self.store.get(t.kind, t.namespace, t.name or "")
        if obj is None:
            raise errors.not_found(t.view or t.kind, t.name or "")
        return obj

    def present(self, t: Target, obj: Obj) -> Obj:
        """The object at the version the client asked for (only the apiVersion differs between served
        versions)."""
        if obj.get("kind") == "Status":
            return obj
        if t.kind.kind == "Event" and t.kind.group == "":
            return to_events_v1(obj) if t.view is not None else core_view(obj)
        if t.version == t.kind.version:
            return obj
        return {**obj, "apiVersion": t.api_version}

    def read(self, t: Target) -> Obj:
        obj = self.existing(t)
        return self._scale(obj) if t.subresource == "scale" else self.present(t, obj)

    def list_objects(
        self, t: Target, match: Matcher, limit: int | None = None, token: str | None = None
    ) -> Obj:
        items = [o for o in self.store.objects(t.kind, t.namespace) if match(o)]
        start = self._continue_from(token) if token else None
        if start is not None:
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        meta: Obj = {"resourceVersion": str(self.store.revision)}
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = _encode_continue(
                self.store.revision, (last.get("namespace", ""), last["name"])
            )
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {
            "kind": f"{t.kind.kind}List",
            "apiVersion": t.api_version,
            "metadata": meta,
            "items": [self._list_item(t, o) for o in items],
        }

    def _continue_from(self, token: str) -> tuple[str, str]:
        """Where a `continue` token resumes; 410 once etcd has compacted the revision it was issued at
        (`staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go`, `ErrCompacted`), with a token to go on
        inconsistently, as the real server offers."""
        revision, start = _decode_continue(token)
        if 0 < revision <= self.store.etcd_compacted():
            raise errors.continue_expired(_encode_continue(-1, start))
        return start

    def _list_item(self, t: Target, obj: Obj) -> Obj:
        """Built-in lists carry items without apiVersion/kind, exactly like the real server's JSON."""
        if not t.kind.builtin:
            return self.present(t, obj)
        return {k: v for k, v in self.present(t, obj).items() if k not in ("apiVersion", "kind")}

    # ---- writes

    def create(self, t: Target, body: Any, opts: WriteOptions) -> Obj:
        obj = self._incoming(t, body)
        self._require_namespace(t.kind, obj)
        if self.store.get(t.kind, t.namespace, obj["metadata"]["name"]) is not None:
            raise errors.already_exists(t.kind, obj["metadata"]["name"])
        self._stamp_identity(t.kind, obj)
        return self._commit(t, None, obj, opts, self._updater(None, opts, t))

    def replace(self, t: Target, body: Any, opts: WriteOptions) -> Obj:
        if t.subresource:
            return self._write_subresource(t, body, opts)
        old = self.existing(t)
        self._check_version(t, old, body)
        new = self._incoming(t, body)
        return self._commit(t, old, self._keep_identity(t.kind, old, new), opts, self._updater(old, opts, t))

    def patch(self, t: Target, body: Any, content_type: str, opts: WriteOptions) -> tuple[Obj, int]:
        """PATCH in any of the four media types; answers 201 when an apply created the object."""
        if content_type == APPLY_PATCH:
            return self.apply(t, body, opts)
        if t.subresource:
            return self._write_subresource(t, _patched(self.read(t), body, content_type), opts), 200
        old = self.existing(t)
        new = _patched(old, body, content_type)
        self._check_version(t, old, new)
        new = self._keep_identity(t.kind, old, new)
        return self._commit(t, old, new, opts, self._updater(old, opts, t)), 200

    def apply(self, t: Target, body: Any, opts: WriteOptions) -> tuple[Obj, int]:
        if not opts.manager:
            raise errors.bad_request("PATCH /apply requires a fieldManager query parameter")
        config = self._incoming(t, body)
        self._check_declared(t, config)
        wanted_version = (body.get("metadata") or {}).get("resourceVersion")
        req = ApplyRequest(t.kind, opts.manager, t.api_version, opts.force, self.clock.timestamp())
        old = self.store.get(t.kind, t.namespace, config["metadata"]["name"])
        if old is None:
            self._require_namespace(t.kind, config)
            obj, entries = apply_create(req, config)
            self._stamp_identity(t.kind, obj)
            return self._commit(t, None, obj, opts, lambda _: entries), 201
        self._check_version(t, old, {"metadata": {"resourceVersion": wanted_version}})
        merged, entries = apply_to(req, old, config)
        return self._commit(t, old, clone(merged), opts, lambda _: entries), 200

    def delete(self, t: Target, options: Obj, opts: WriteOptions) -> Obj:
        obj = self.existing(t)
        _check_preconditions(t, obj, options.get("preconditions") or {})
        policy = options.get("propagationPolicy") or (
            "Orphan" if options.get("orphanDependents") else "Background"
        )
        if t.kind == self.namespace_kind:
            return self.present(t, obj if opts.dry_run else self.terminate_namespace(obj))
        if not opts.dry_run:
            staying = self.delete_object(t.kind, obj, policy, options.get("gracePeriodSeconds"))
            if staying is not None:
                return self.present(t, staying)
        if t.kind.returns_deleted_object:
            return self.present(t, obj)
        return errors.success_status(t.kind, obj["metadata"]["name"], obj["metadata"]["uid"])

    def delete_collection(self, t: Target, match: Matcher, options: Obj, opts: WriteOptions) -> Obj:
        listed = self.list_objects(t, match)
        for item in listed["items"]:
            self.delete(
                Target(t.kind, t.version, item["metadata"].get("namespace"), item["metadata"]["name"]),
                options,
                opts,
            )
        return listed

    # ---- writes by the fake's own controllers

    def save(self, kind: ResourceKind, obj: Obj, manager: str = CONTROLLER) -> Obj:
        """Create or update without validation: trusted writes by the controllers (no-op when unchanged)."""
        obj = clone(obj)
        old = self.store.get(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        t = Target(kind, kind.version, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        opts = WriteOptions(manager)
        if old is None:
            self._stamp_identity(kind, obj)
            return self._commit(t, None, obj, opts, self._updater(None, opts, t), validate=False)
        obj = self._keep_identity(kind, old, obj, keep_status=False)
        return self._commit(t, old, obj, opts, self._updater(old, opts, t), validate=False)

    def put_trusted(self, kind: ResourceKind, obj: Obj) -> Obj:
        """Store a fake-made object as is: no defaults, validation or field tracking (the fast path for
        Events, which are a dozen writes per rollout and which nobody reads managedFields of)."""
        meta = obj["metadata"]
        old = self.store.get(kind, meta.get("namespace"), meta["name"])
        if old is None:
            meta["uid"], meta["creationTimestamp"] = str(uuid.uuid4()), self.clock.timestamp()
        else:
            meta["uid"], meta["creationTimestamp"] = (
                old["metadata"]["uid"],
                old["metadata"]["creationTimestamp"],
            )
        self.store.put(kind, obj)
        return obj

    def save_status(self, kind: ResourceKind, obj: Obj, status: Obj, annotations: Obj | None = None) -> Obj:
        """Write the status subresource only; never bumps generation. The deployment controller also
        writes its revision annotation this way (UpdateStatus keeps metadata but spec and labels)."""
        current = self.store.get(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if current is None or (current.get("status") == status and annotations is None):
            return current or obj
        new = {**current, "metadata": dict(current["metadata"]), "status": status}
        if annotations is not None:
            new["metadata"]["annotations"] = annotations
        self.store.put(kind, new)
        return new

    def delete_object(
        self, kind: ResourceKind, obj: Obj, policy: str = "Background", grace: object = None
    ) -> Obj | None:
        """A client's (or the garbage collector's) delete: pods terminate gracefully and dependents are
        collected later (see `deletion.py`); returns the object while it stays."""
        if policy == "Orphan":
            self.remove(kind, obj, policy)
            return None
        return deletion.begin(self.store, self.clock, kind, obj, policy, grace)

    def remove(self, kind: ResourceKind, obj: Obj, policy: str = "Background") -> None:
        """Delete with garbage collection of everything it owns (Orphan strips the owner reference
        instead)."""
        uid = obj["metadata"]["uid"]
        if policy != "Foreground":
            self.store.remove(kind, obj)
        for dep_kind, dep in self.store.dependents(uid):
            if policy == "Orphan":
                self._orphan(dep_kind, dep, uid)
            else:
                self.remove(dep_kind, dep, "Background")
        if policy == "Foreground":
            self.store.remove(kind, obj)

    # ---- helpers

    def _commit(
        self,
        t: Target,
        old: Obj | None,
        new: Obj,
        opts: WriteOptions,
        ownership: Ownership,
        validate: bool = True,
    ) -> Obj:
        apply_defaults(new)
        if old is not None:
            _carry_allocated(t.kind, old, new)
        flat = flatten(new)
        entries = prune(ownership(flat), flat.keys())
        write_entries(new, entries)
        _set_generation(old, new)
        if validate:
            validate_object(t.kind, _client_owned(t.kind, new), old)
        if (
            old is not None
            and same_ownership(read_entries(old), entries)
            and _without_managed(new) == _without_managed(old)
        ):
            return self.present(t, old)
        if len(json.dumps(new, separators=(",", ":"))) > MAX_STORED_BYTES:
            raise errors.etcd_request_too_large()
        if not opts.dry_run:
            self.store.put(t.kind, new)
        return self.present(t, new)

    def _updater(self, old: Obj | None, opts: WriteOptions, t: Target, subresource: str = "") -> Ownership:
        now = self.clock.timestamp()
        return lambda new: record_update(old, new, opts.manager, t.api_version, now, subresource)

    def _incoming(self, t: Target, body: Any) -> Obj:
        """A client's object, checked against the URL, with everything the server owns stripped."""
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of the request must be a {t.kind.kind} object")
        obj = clone(body)
        _expect(obj, "apiVersion", t.api_version, "API version")
        _expect(obj, "kind", t.kind.kind, "kind")
        if t.view is not None:
            obj = to_core(obj)
        obj["apiVersion"] = t.kind.api_version
        meta = obj["metadata"] = obj.get("metadata") or {}
        for name in _SERVER_METADATA:
            meta.pop(name, None)
        self._name(t, meta)
        if t.kind.namespaced:
            if meta.get("namespace") not in (None, "", t.namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = t.namespace
        return obj

    def _check_declared(self, t: Target, config: Obj) -> None:
        """Apply converts the configuration to a typed object first; an undeclared field fails that with a
        500, not the 422 a POST gets (kubernetes#122480)."""
        if t.kind.validation != "schema":
            return
        undeclared = undeclared_fields(t.kind, _client_owned(t.kind, config))
        if undeclared:
            why = f"{undeclared[0]}: field not declared in schema"
            if len(undeclared) > 1:
                why = "errors:\n" + "\n".join(f"  {p}: field not declared in schema" for p in undeclared)
            name = config["metadata"]["name"]
            raise errors.typed_patch_failed(t.kind, t.api_version, t.namespace, name, why)

    def _name(self, t: Target, meta: Obj) -> None:
        if not meta.get("name") and meta.get("generateName") and not t.name:
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if t.name and meta.get("name") not in (None, t.name):
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({t.name})"
            )
        if t.name:
            meta["name"] = t.name
        if not meta.get("name"):
            raise errors.invalid(
                t.kind,
                "",
                [
                    errors.Cause(
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                        "metadata.name",
                    )
                ],
            )

    def _require_namespace(self, kind: ResourceKind, obj: Obj) -> None:
        if not kind.namespaced:
            return
        ns_name = obj["metadata"]["namespace"]
        namespace = self.store.get(self.namespace_kind, None, ns_name)
        if namespace is None:
            raise errors.namespace_not_found(ns_name)
        if namespace["metadata"].get("deletionTimestamp"):
            raise errors.namespace_terminating(kind, obj["metadata"]["name"], ns_name)

    def _stamp_identity(self, kind: ResourceKind, obj: Obj) -> None:
        obj["metadata"]["uid"] = str(uuid.uuid4())
        obj["metadata"]["creationTimestamp"] = self.clock.timestamp()
        status = _initial_status(kind, obj)
        if status is not None:
            obj["status"] = status

    def _keep_identity(self, kind: ResourceKind, old: Obj, new: Obj, keep_status: bool = True) -> Obj:
        """Fields a client cannot change through the main resource: identity, and status where it is a
        subresource."""
        meta = new["metadata"]
        for name in (
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ):
            if name in old["metadata"]:
                meta[name] = old["metadata"][name]
        meta.pop("resourceVersion", None)
        if kind.has_status and keep_status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = old["status"]
        return new

    def _check_version(self, t: Target, old: Obj, new: Any) -> None:
        """The optimistic-concurrency precondition: a stale resourceVersion is a 409 Conflict."""
        wanted = ((new.get("metadata") or {}) if isinstance(new, dict) else {}).get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise errors.conflict(t.kind, old["metadata"]["name"])

    def _orphan(self, kind: ResourceKind, obj: Obj, owner_uid: str) -> None:
        refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
        new = clone(obj)
        new["metadata"]["ownerReferences"] = refs
        if not refs:
            del new["metadata"]["ownerReferences"]
        self.save(kind, new, "kube-garbage-collector")

    def _terminate_namespace(self, namespace: Obj) -> Obj:
        """At once: Terminating, then every object in it deleted, then the namespace itself."""
        terminating = clone(namespace)
        terminating["metadata"]["deletionTimestamp"] = self.clock.timestamp()
        terminating["status"] = {"phase": "Terminating"}
        self.store.put(self.namespace_kind, terminating)
        name = namespace["metadata"]["name"]
        for kind in self.registry:
            for obj in self.store.objects(kind, name) if kind.namespaced else []:
                if self.store.get(kind, name, obj["metadata"]["name"]) is not None:
                    self.remove(kind, obj)
        self.store.remove(self.namespace_kind, terminating)
        return terminating

    def _scale(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        selector = (obj.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            },
        }

    def _write_subresource(self, t: Target, body: Any, opts: WriteOptions) -> Obj:
        old = self.existing(t)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be an object")
        if t.subresource == "status":
            new = clone(old)
            new["status"] = body.get("status") or {}
            validate_object(t.kind, new, old)
            return self.present(t, self.save_status(t.kind, old, new["status"]) if not opts.dry_run else new)
        if t.subresource != "scale":
            raise errors.method_not_allowed("PUT", t.subresource or "")
        self._check_version(t, old, body)
        new = clone(old)
        new["spec"]["replicas"] = (body.get("spec") or {}).get("replicas", 0)
        new = self._keep_identity(t.kind, old, new)
        self._commit(t, old, new, opts, self._updater(old, opts, t, "scale"))
        return self._scale(self.existing(t) if not opts.dry_run else new)


def _expect(obj: Obj, field: str, wanted: str, label: str) -> None:
    if obj.get(field) not in (None, "", wanted):
        raise errors.bad_request(
            f"the {label} in the data ({obj[field]}) does not match the expected {label} ({wanted})"
        )
    obj.setdefault(field, wanted)


def _set_generation(old: Obj | None, new: Obj) -> None:
    if "spec" not in new:
        new["metadata"].pop("generation", None)
        return
    if old is None:
        new["metadata"]["generation"] = 1
        return
    previous = old["metadata"].get("generation", 1)
    changed = old.get("spec") != new.get("spec")
    if new.get("kind") == "Deployment":  # annotations are copied to ReplicaSets: pkg/registry/apps/deployment
        changed = changed or old["metadata"].get("annotations") != new["metadata"].get("annotations")
    new["metadata"]["generation"] = previous + changed


def _patched(old: Obj, body: Any, content_type: str) -> Obj:
    if content_type == MERGE_PATCH:
        result = merge_patch(old, body)
    elif content_type == STRATEGIC_MERGE_PATCH:
        result = strategic_merge_patch(old, body)
    elif content_type == JSON_PATCH:
        result = json_patch(old, body)
    else:
        raise errors.unsupported_media_type(content_type)
    if not isinstance(result, dict):
        raise errors.bad_request("the patch must produce an object")
    return clone(result)


def _check_preconditions(t: Target, obj: Obj, preconditions: Obj) -> None:
    for field, actual in (
        ("uid", obj["metadata"]["uid"]),
        ("resourceVersion", obj["metadata"]["resourceVersion"]),
    ):
        wanted = preconditions.get(field)
        if wanted and wanted != actual:
            raise errors.conflict(t.kind, obj["metadata"]["name"])


def _encode_continue(revision: int, key: tuple[str, str]) -> str:
    """An opaque token like the apiserver's (base64 JSON of version, revision and start key)."""
    token = {"v": "meta.k8s.io/v1", "rv": revision, "start": "/".join(key)}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, name = str(decoded["start"]).split("/", 1)
        return int(decoded["rv"]), (namespace, name)
    except (ValueError, TypeError, KeyError) as exc:
        raise errors.bad_request("continue key is not valid") from exc
