"""core/v1 Events as the controllers and kubelet record them: repeated events are aggregated by count."""

import secrets
from collections import OrderedDict

from kepler_kubefake.kinds import Obj
from kepler_kubefake.resources import Api

NODE = "kubefake-node"


class EventRecorder:
    def __init__(self, api: Api, max_events: int = 5000) -> None:
        self.api = api
        self.kind = api.registry.named("Event")
        self.max_events = max_events
        self._names: OrderedDict[tuple[str, str, str], tuple[str, str]] = OrderedDict()

    def record(
        self,
        involved: Obj,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        component: str = "kubelet",
        field_path: str = "",
    ) -> None:
        meta = involved["metadata"]
        key = (meta["uid"], reason, message)
        namespace = meta.get("namespace") or "default"
        if key in self._names:
            existing = self.api.store.get(self.kind, *self._names[key])
            if existing is not None:
                self._bump(existing)
                self._names.move_to_end(key)
                return
        if self.api.store.get(self.api.namespace_kind, None, namespace) is None:
            return  # the namespace is gone: the real server refuses the event too
        name = f"{meta['name']}.{secrets.token_hex(8)}"
        event = self._event(involved, name, namespace, reason, message, warning, component, field_path)
        self.api.put_trusted(self.kind, event)
        self._names[key] = (namespace, name)
        self._evict()

    def _bump(self, event: Obj) -> None:
        now = self.api.clock.timestamp()
        updated = {
            **event,
            "metadata": dict(event["metadata"]),
            "count": event.get("count", 1) + 1,
            "lastTimestamp": now,
        }
        self.api.put_trusted(self.kind, updated)

    def _evict(self) -> None:
        """Keep the newest `max_events`, as the real server's one-hour event TTL keeps etcd bounded."""
        while len(self._names) > self.max_events:
            _, (namespace, name) = self._names.popitem(last=False)
            if (old := self.api.store.get(self.kind, namespace, name)) is not None:
                self.api.remove(self.kind, old)

    def _event(
        self,
        involved: Obj,
        name: str,
        namespace: str,
        reason: str,
        message: str,
        warning: bool,
        component: str,
        field_path: str,
    ) -> Obj:
        meta = involved["metadata"]
        ref: Obj = {
            "kind": involved["kind"],
            "namespace": meta.get("namespace", ""),
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": involved["apiVersion"],
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if field_path:
            ref["fieldPath"] = field_path
        now = self.api.clock.timestamp()
        source: Obj = {"component": component} | ({"host": NODE} if component == "kubelet" else {})
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": "Warning" if warning else "Normal",
            "reportingComponent": component,
            "reportingInstance": NODE if component == "kubelet" else "",
        }
