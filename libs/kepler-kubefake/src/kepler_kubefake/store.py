"""The state: objects by kind, one global resourceVersion counter, and a bounded history of changes for
watches.

Everything runs on one event loop and the store is synchronous, so "write, record, notify" is atomic: a watch
that replays history and then subscribes cannot miss or duplicate an event. Stored objects are never mutated
in place; writers always store a fresh dict.
"""

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kepler_kubefake.errors import gone
from kepler_kubefake.kinds import Obj, ResourceKind

Key = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write, as a watch sees it; `old` lets a filtered watch turn MODIFIED into
    ADDED/DELETED."""

    rv: int
    kind: ResourceKind
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    old: Obj | None


@dataclass(eq=False, slots=True)
class Subscription:
    kind: ResourceKind
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


def owner_uids(obj: Obj) -> list[str]:
    return [ref["uid"] for ref in obj["metadata"].get("ownerReferences") or [] if "uid" in ref]


class Store:
    def __init__(self, history_size: int = 10_000) -> None:
        self._rv = 0
        self._objects: dict[ResourceKind, dict[Key, Obj]] = {}
        self._history: deque[Change] = deque(maxlen=max(1, history_size))
        self._compacted = 0
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[Change], None]] = []
        self._dependents: dict[str, set[tuple[ResourceKind, Key]]] = {}

    @property
    def revision(self) -> int:
        return self._rv

    def get(self, kind: ResourceKind, namespace: str | None, name: str) -> Obj | None:
        return self._objects.get(kind, {}).get((namespace or "", name))

    def objects(self, kind: ResourceKind, namespace: str | None = None) -> list[Obj]:
        objects = self._objects.get(kind, {})
        keys = sorted(k for k in objects if namespace is None or k[0] == namespace)
        return [objects[k] for k in keys]

    def dependents(self, uid: str) -> list[tuple[ResourceKind, Obj]]:
        found = []
        for kind, key in sorted(self._dependents.get(uid, ()), key=lambda d: (d[0].plural, d[1])):
            if (obj := self._objects.get(kind, {}).get(key)) is not None:
                found.append((kind, obj))
        return found

    def put(self, kind: ResourceKind, obj: Obj) -> Change:
        """Store a fresh object under a new resourceVersion; ADDED or MODIFIED depending on what was there."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = key_of(obj)
        old = self._objects.setdefault(kind, {}).get(key)
        self._objects[kind][key] = obj
        self._index(kind, key, old, obj)
        return self._record(Change(self._rv, kind, "MODIFIED" if old else "ADDED", obj, old))

    def remove(self, kind: ResourceKind, obj: Obj) -> Change:
        """Delete; the DELETED event carries the object at the deletion's resourceVersion, as etcd reports
        it."""
        key = key_of(obj)
        old = self._objects.get(kind, {}).pop(key)
        self._rv += 1
        final = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
        self._index(kind, key, old, None)
        return self._record(Change(self._rv, kind, "DELETED", final, old))

    def _index(self, kind: ResourceKind, key: Key, old: Obj | None, new: Obj | None) -> None:
        for uid in owner_uids(old) if old else []:
            self._dependents.get(uid, set()).discard((kind, key))
        for uid in owner_uids(new) if new else []:
            self._dependents.setdefault(uid, set()).add((kind, key))

    def _record(self, change: Change) -> Change:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(change)
        for listener in self._listeners:
            listener(change)
        for sub in self._subscriptions:
            if sub.kind == change.kind:
                sub.queue.put_nowait(change)
        return change

    def since(self, kind: ResourceKind, rv: int) -> list[Change]:
        """Changes after `rv`, or 410 Gone when history no longer reaches back that far."""
        if rv < self._compacted:
            raise gone(str(rv), self._compacted + 1)
        return [c for c in self._history if c.rv > rv and c.kind == kind]

    def compact(self) -> None:
        """Forget all history, so every resourceVersion seen so far becomes too old to watch from."""
        self._compacted = self._rv
        self._history.clear()

    def snapshot(self) -> dict[str, Any]:
        """Every object and the resourceVersion counter: what `restore` needs (history is not kept)."""
        objects = [obj for by_key in self._objects.values() for obj in by_key.values()]
        return {"resourceVersion": self._rv, "objects": objects}

    def restore(self, snapshot: dict[str, Any], kind_of: Callable[[Obj], ResourceKind | None]) -> int:
        """Load a `snapshot` into this (empty) store; returns how many objects it holds.

        Objects keep their resourceVersions and the counter continues after the saved one, so versions
        stay monotonic across a restart. History starts empty and compacted: a watch from before the
        restart gets 410 Gone and re-lists, as after a real API server restart."""
        for obj in snapshot.get("objects") or []:
            kind = kind_of(obj)
            if kind is None:
                continue  # a kind this server no longer serves
            key = key_of(obj)
            self._objects.setdefault(kind, {})[key] = obj
            self._index(kind, key, None, obj)
        self._rv = max(self._rv, int(snapshot.get("resourceVersion") or 0))
        self._compacted = self._rv
        return sum(len(by_key) for by_key in self._objects.values())

    def subscribe(self, kind: ResourceKind) -> Subscription:
        sub = Subscription(kind)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def close(self) -> None:
        """Wake every watcher with an end-of-stream marker (server shutdown)."""
        for sub in self._subscriptions:
            sub.queue.put_nowait(None)

    def listen(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[Change], None]) -> None:
        self._listeners.remove(listener)
