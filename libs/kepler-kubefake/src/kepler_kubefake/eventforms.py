"""One Event, two API groups: the apiserver stores core/v1 Events and serves the same objects as
`events.k8s.io/v1` by conversion (`pkg/apis/events/v1/conversion.go`), so an event written through either
group is readable through both. The fake stores the core form and converts on the way in and out."""

from kepler_kubefake.kinds import Obj

# core/v1 field → events.k8s.io/v1 field, where the names differ
_RENAMED = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}
_SHARED = ("metadata", "eventTime", "series", "action", "reason", "related", "type", "reportingInstance")
# fields the Go types serialise even when unset (no omitempty, or a struct), as null
_CORE_NULLS = ("firstTimestamp", "lastTimestamp", "eventTime")
_V1_NULLS = ("eventTime",)


def to_events_v1(core: Obj) -> Obj:
    """The events.k8s.io/v1 form of a stored core/v1 Event."""
    out: Obj = {"apiVersion": "events.k8s.io/v1", "kind": "Event"}
    for name in _SHARED:
        if name in core:
            out[name] = core[name]
    for old, new in _RENAMED.items():
        if core.get(old) not in (None, {}, 0, ""):
            out[new] = core[old]
    for name in _V1_NULLS:
        out.setdefault(name, None)
    return out


def to_core(event: Obj) -> Obj:
    """The core/v1 form of an events.k8s.io/v1 Event (what is stored)."""
    out: Obj = {"apiVersion": "v1", "kind": "Event"}
    for name in _SHARED:
        if name in event:
            out[name] = event[name]
    for old, new in _RENAMED.items():
        if event.get(new) is not None:
            out[old] = event[new]
    return out


def core_view(core: Obj) -> Obj:
    """A stored core Event as core/v1 serialises it: unset timestamps as null, `source` as `{}`."""
    out = dict(core)
    for name in _CORE_NULLS:
        out.setdefault(name, None)
    out.setdefault("source", {})
    return out
