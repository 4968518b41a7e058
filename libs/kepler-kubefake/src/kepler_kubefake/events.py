"""Events as the fake's controllers, kubelet and scheduler record them.

Two recorders exist in a real cluster. The kubelet and kube-controller-manager use the core/v1 one
(`client-go/tools/record`): `firstTimestamp`/`lastTimestamp`/`count`, `source`, no `eventTime`. The scheduler
uses the events.k8s.io/v1 one (`client-go/tools/events`): `eventTime`, `series` on repeats,
`reportingController`/`reportingInstance`, `action`, and null first/last timestamps. Both are stored once
and readable through both API groups (see `eventforms.py`). Events expire an hour (Kubernetes time) after
their last write, as with the apiserver's `--event-ttl=1h`; the newest `max_events` are kept meanwhile.
"""

import asyncio
import secrets
from collections import OrderedDict

from kepler_kubefake.kinds import Obj
from kepler_kubefake.resources import Api

NODE = "kubefake-node"
EVENT_TTL = 3600.0  # Kubernetes seconds
NEW_STYLE = {"default-scheduler": "Binding"}  # components on the events.k8s.io recorder → their action


class EventRecorder:
    def __init__(self, api: Api, max_events: int = 5000, ttl: float = EVENT_TTL) -> None:
        self.api = api
        self.kind = api.registry.named("Event")
        self.max_events = max_events
        self.ttl = ttl
        self._names: OrderedDict[tuple[str, str, str], tuple[str, str]] = OrderedDict()
        self._expiries: set[asyncio.TimerHandle] = set()

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
                self._expire_later(self._bump(existing))
                self._names.move_to_end(key)
                return
        if self.api.store.get(self.api.namespace_kind, None, namespace) is None:
            return  # the namespace is gone: the real server refuses the event too
        name = f"{meta['name']}.{secrets.token_hex(8)}"
        ref = _reference(involved, field_path)
        if component in NEW_STYLE:
            event = self._new_style(ref, name, namespace, reason, message, warning, component)
        else:
            event = self._event(ref, name, namespace, reason, message, warning, component)
        self._expire_later(self.api.put_trusted(self.kind, event))
        self._names[key] = (namespace, name)
        self._evict()

    def close(self) -> None:
        for handle in self._expiries:
            handle.cancel()
        self._expiries.clear()

    def _bump(self, event: Obj) -> Obj:
        updated = {**event, "metadata": dict(event["metadata"])}
        if event.get("eventTime"):  # events.k8s.io: a series
            series = event.get("series") or {"count": 1}
            updated["series"] = {
                "count": series["count"] + 1,
                "lastObservedTime": self.api.clock.micro_timestamp(),
            }
        else:
            updated["count"] = event.get("count", 1) + 1
            updated["lastTimestamp"] = self.api.clock.timestamp()
        return self.api.put_trusted(self.kind, updated)

    def _expire_later(self, event: Obj) -> None:
        """Delete the event `ttl` after this write unless it is written again meanwhile."""
        meta = event["metadata"]
        version = meta["resourceVersion"]

        def expire() -> None:
            self._expiries.discard(handle)
            current = self.api.store.get(self.kind, meta["namespace"], meta["name"])
            if current is not None and current["metadata"]["resourceVersion"] == version:
                self.api.remove(self.kind, current)

        handle = asyncio.get_running_loop().call_later(self.api.clock.real_seconds(self.ttl), expire)
        self._expiries.add(handle)

    def _evict(self) -> None:
        """Keep the newest `max_events` between expiries."""
        while len(self._names) > self.max_events:
            _, (namespace, name) = self._names.popitem(last=False)
            if (old := self.api.store.get(self.kind, namespace, name)) is not None:
                self.api.remove(self.kind, old)

    def _event(
        self, ref: Obj, name: str, namespace: str, reason: str, message: str, warning: bool, component: str
    ) -> Obj:
        """A core/v1 recorder's event (`client-go/tools/record/event.go` `makeEvent`)."""
        now = self.api.clock.timestamp()
        source: Obj = {"component": component} | ({"host": NODE} if component == "kubelet" else {})
        return _stored(ref, name, namespace, reason, message) | {
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": "Warning" if warning else "Normal",
            "reportingComponent": component,
            "reportingInstance": NODE if component == "kubelet" else "",
        }

    def _new_style(
        self, ref: Obj, name: str, namespace: str, reason: str, message: str, warning: bool, component: str
    ) -> Obj:
        """An events.k8s.io/v1 recorder's event (`client-go/tools/events/event_recorder.go` `makeEvent`),
        in its stored core form."""
        return _stored(ref, name, namespace, reason, message) | {
            "eventTime": self.api.clock.micro_timestamp(),
            "action": NEW_STYLE[component],
            "type": "Warning" if warning else "Normal",
            "reportingComponent": component,
            "reportingInstance": f"{component}-{NODE}",
        }


def _stored(ref: Obj, name: str, namespace: str, reason: str, message: str) -> Obj:
    """What both recorders' events have, in the one (core) form the fake stores."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": ref,
        "reason": reason,
        "message": message,
    }


def _reference(involved: Obj, field_path: str) -> Obj:
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
    return ref
