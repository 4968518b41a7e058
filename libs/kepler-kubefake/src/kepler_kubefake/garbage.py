"""The garbage collector: dependents of a deleted owner are deleted a moment later, not with it.

Follows pkg/controller/garbagecollector: with Background propagation (the apps/v1 default) the owner is gone
at once and the collector, having noticed, deletes the dependents whose owners are all gone (and drops the
dangling reference from those that have another owner); with Foreground the owner waits, Terminating with
the `foregroundDeletion` finalizer, while its dependents are deleted (in the foreground too), and is removed
when none is left. Pods among the dependents terminate gracefully, so that takes their grace time too.
"""

from kepler_kubefake.deletion import FOREGROUND
from kepler_kubefake.kinds import Obj, ResourceKind, clone
from kepler_kubefake.resources import Api
from kepler_kubefake.store import Change

GC_DELAY = 1.0  # Kubernetes seconds between an owner's deletion and the collector acting on it
OwnerKey = tuple[ResourceKind, str, str]  # (kind, namespace, name)


def _foreground(obj: Obj) -> bool:
    meta = obj["metadata"]
    return bool(meta.get("deletionTimestamp")) and FOREGROUND in (meta.get("finalizers") or [])


class GarbageCollector:
    def __init__(self, api: Api) -> None:
        self.api = api
        self._waiting: dict[str, OwnerKey] = {}  # owners deleting in the foreground, by uid

    def noticed(self, change: Change) -> list[tuple[str, bool]]:
        """The owners (uid, whether to wait GC_DELAY) to look at because of a change."""
        meta = change.obj["metadata"]
        uid = meta["uid"]
        found: list[tuple[str, bool]] = []
        if change.type == "DELETED":
            self._waiting.pop(uid, None)
            if self.api.store.dependents(uid):
                found.append((uid, True))
            found += [
                (ref["uid"], False)
                for ref in meta.get("ownerReferences") or []
                if ref["uid"] in self._waiting
            ]
        elif _foreground(change.obj) and uid not in self._waiting:
            self._waiting[uid] = (change.kind, meta.get("namespace", ""), meta["name"])
            found.append((uid, True))
        return found

    def resume(self, kind: ResourceKind, obj: Obj) -> bool:
        """An owner restored from a state file while deleting in the foreground: take it up again."""
        meta = obj["metadata"]
        if not _foreground(obj):
            return False
        self._waiting[meta["uid"]] = (kind, meta.get("namespace", ""), meta["name"])
        return True

    def collect(self, uid: str) -> None:
        owner = self._owner(uid)
        deleting = owner is not None and _foreground(owner)
        if owner is not None and not deleting:
            return
        for kind, dependent in self.api.store.dependents(uid):
            refs = dependent["metadata"].get("ownerReferences") or []
            others = [r for r in refs if r.get("uid") != uid]
            if owner is None and others:
                self._drop_reference(kind, dependent, others)
            elif not dependent["metadata"].get("deletionTimestamp"):
                self.api.delete_object(kind, dependent, "Foreground" if deleting else "Background")
        if owner is not None and not self.api.store.dependents(uid):
            key = self._waiting.pop(uid)
            final = clone(owner)
            rest = [f for f in owner["metadata"]["finalizers"] if f != FOREGROUND]
            final["metadata"].pop("finalizers")
            final["metadata"] |= {"finalizers": rest} if rest else {}
            self.api.store.remove(key[0], final)

    def _owner(self, uid: str) -> Obj | None:
        key = self._waiting.get(uid)
        if key is None:
            return None
        obj = self.api.store.get(*key)
        return obj if obj is not None and obj["metadata"]["uid"] == uid else None

    def _drop_reference(self, kind: ResourceKind, dependent: Obj, others: list[Obj]) -> None:
        updated = clone(dependent)
        updated["metadata"]["ownerReferences"] = others
        self.api.save(kind, updated, "generic-garbage-collector")
