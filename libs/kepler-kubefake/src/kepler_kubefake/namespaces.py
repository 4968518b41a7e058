"""Namespace deletion as the namespace controller does it (`pkg/controller/namespace/deletion`): DELETE
answers 200 with the namespace `Terminating`, its content is deleted afterwards, and the namespace itself
goes only after a while. Meanwhile the NamespaceLifecycle admission plugin refuses creates in it (403
`NamespaceTerminating`), which `Api._require_namespace` enforces for every client create and apply."""

import asyncio
import logging

from kepler_kubefake import errors
from kepler_kubefake.clock import Clock
from kepler_kubefake.kinds import Obj, clone
from kepler_kubefake.resources import Api

log = logging.getLogger("kepler_kubefake.namespaces")
STILL_TERMINATING = (
    "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace "
    "will automatically be purged by the system."
)


class NamespaceLifecycle:
    def __init__(self, api: Api, clock: Clock, delete_delay: float = 5.0) -> None:
        """`delete_delay`: Kubernetes seconds from DELETE until the namespace is gone."""
        self.api, self.clock, self.delete_delay = api, clock, delete_delay
        self._held: set[str] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        api.terminate_namespace = self.terminate

    def terminate(self, namespace: Obj, hold: bool = False) -> Obj:
        """Mark `namespace` Terminating and schedule its content's deletion and its own; `hold` keeps it
        Terminating (content deleted) until `release`. A second DELETE is 409, as the namespace registry
        answers."""
        name = namespace["metadata"]["name"]
        if namespace["metadata"].get("deletionTimestamp"):
            if hold:
                self._held.add(name)
                return namespace
            raise errors.ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on namespaces "{name}": {STILL_TERMINATING}',
                {"name": name, "kind": "namespaces"},
            )
        if hold:
            self._held.add(name)
        terminating = clone(namespace)
        terminating["metadata"]["deletionTimestamp"] = self.clock.timestamp()
        terminating.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        terminating["status"] = {"phase": "Terminating"}
        stored = self.api.store.put(self.api.namespace_kind, terminating).obj
        loop = asyncio.get_running_loop()
        self._schedule(loop, 0.0, self._purge_content, name)
        self._schedule(loop, self.clock.real_seconds(self.delete_delay), self._finish, name)
        return stored

    def release(self, name: str) -> None:
        """Let a held namespace finish terminating now."""
        self._held.discard(name)
        self._finish(name)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay: float, step: object, name: str) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            try:
                step(name)  # type: ignore[operator]
            except Exception:
                log.exception("kubefake: terminating namespace %s failed", name)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _purge_content(self, name: str) -> None:
        for kind in self.api.registry:
            for obj in self.api.store.objects(kind, name) if kind.namespaced else []:
                if self.api.store.get(kind, name, obj["metadata"]["name"]) is not None:
                    self.api.remove(kind, obj)

    def _finish(self, name: str) -> None:
        if name in self._held:
            return
        namespace = self.api.store.get(self.api.namespace_kind, None, name)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        self._purge_content(name)  # anything a controller slipped in meanwhile
        self.api.store.remove(self.api.namespace_kind, namespace)
