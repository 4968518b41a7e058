"""The state: objects by kind, one global resourceVersion counter, and a bounded history of changes for
watches.

The history is kept per kind and bounded like the apiserver's watch cache
(`staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go`): by a number of events and by age (the
cache's `eventFreshDuration`, 75 s). Old events are dropped when a newer one of the same kind arrives, so a
quiet resource still resumes from its last event, and a watch from before the oldest kept event is 410.

Everything runs on one event loop and the store is synchronous, so "write, record, notify" is atomic: a watch
that replays history and then subscribes cannot miss or duplicate an event. Stored objects are never mutated
in place; writers always store a fresh dict.
"""

import asyncio
import time
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
    at: float = 0.0  # time.monotonic() when it was committed


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
    def __init__(
        self,
        history_size: int = 10_000,
        history_window: float | None = None,
        etcd_window: float | None = None,
    ) -> None:
        """`history_size` events per kind, none older than `history_window` real seconds (None: no age
        limit); etcd keeps revisions `etcd_window` real seconds (its compaction), which bounds how long a
        list's `continue` token stays usable."""
        self._rv = 0
        self._objects: dict[ResourceKind, dict[Key, Obj]] = {}
        self._history_size = max(1, history_size)
        self._history_window = history_window
        self._history: dict[ResourceKind, deque[Change]] = {}
        self._compacted = 0  # everything at or before this version is gone (compact(), a restart)
        self._evicted: dict[ResourceKind, int] = {}  # per kind: the newest version dropped from history
        self._etcd_window = etcd_window
        self._etcd_revisions: deque[tuple[float, int]] = deque()  # (when, revision) within the window
        self._etcd_compacted = 0
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
        change = Change(self._rv, kind, "MODIFIED" if old else "ADDED", obj, old, time.monotonic())
        return self._record(change)

    def remove(self, kind: ResourceKind, obj: Obj) -> Change:
        """Delete; the DELETED event carries the object at the deletion's resourceVersion, as etcd reports
        it."""
        key = key_of(obj)
        old = self._objects.get(kind, {}).pop(key)
        self._rv += 1
        final = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
        self._index(kind, key, old, None)
        return self._record(Change(self._rv, kind, "DELETED", final, old, time.monotonic()))

    def _index(self, kind: ResourceKind, key: Key, old: Obj | None, new: Obj | None) -> None:
        for uid in owner_uids(old) if old else []:
            self._dependents.get(uid, set()).discard((kind, key))
        for uid in owner_uids(new) if new else []:
            self._dependents.setdefault(uid, set()).add((kind, key))

    def _record(self, change: Change) -> Change:
        history = self._history.setdefault(change.kind, deque())
        history.append(change)
        self._evict(change.kind, history, change.at)
        self._etcd_revisions.append((change.at, change.rv))
        self.etcd_compacted(change.at)
        for listener in self._listeners:
            listener(change)
        for sub in self._subscriptions:
            if sub.kind == change.kind:
                sub.queue.put_nowait(change)
        return change

    def _evict(self, kind: ResourceKind, history: deque[Change], now: float) -> None:
        """Drop events past the count, and events older than the window (always keeping the newest)."""
        window = self._history_window
        while len(history) > self._history_size or (
            window is not None and len(history) > 1 and now - history[0].at > window
        ):
            self._evicted[kind] = history.popleft().rv

    def etcd_compacted(self, now: float | None = None) -> int:
        """The newest revision etcd has compacted away: older than its window, or `compact()`ed."""
        now = time.monotonic() if now is None else now
        window = self._etcd_window
        while window is not None and self._etcd_revisions and now - self._etcd_revisions[0][0] > window:
            self._etcd_compacted = self._etcd_revisions.popleft()[1]
        return max(self._etcd_compacted, self._compacted)

    def since(self, kind: ResourceKind, rv: int) -> list[Change]:
        """Changes of `kind` after `rv`, or 410 Gone when its history no longer reaches back that far."""
        oldest = max(self._compacted, self._evicted.get(kind, 0))
        if rv < oldest:
            raise gone(str(rv), oldest)
        return [c for c in self._history.get(kind, ()) if c.rv > rv]

    def compact(self) -> None:
        """Forget all history, so every resourceVersion seen so far becomes too old to watch from."""
        self._compacted = self._rv
        self._history.clear()
        self._evicted.clear()
        self._etcd_revisions.clear()

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
