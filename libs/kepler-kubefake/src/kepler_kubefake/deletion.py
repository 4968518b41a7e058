"""What a DELETE does before anything is gone: graceful pod deletion and foreground cascading.

- A Pod bound to a node is not removed: it gets `deletionTimestamp` (now + grace) and
  `deletionGracePeriodSeconds` and stays Terminating until the kubelet has stopped it
  (pkg/registry/core/pod/strategy.go, `CheckGracefulDelete`; grace from DeleteOptions, else
  `terminationGracePeriodSeconds`; 0 for unbound or finished pods, and 0 deletes at once). A second DELETE can
  only shorten the grace period (staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go, BeforeDelete).
- `propagationPolicy=Foreground` keeps the owner with the `foregroundDeletion` finalizer until the garbage
  collector has deleted its dependents; Background (the apps/v1 default) removes the owner now and leaves
  the dependents to the collector (pkg/controller/garbagecollector), asynchronously.
"""

from datetime import UTC, datetime, timedelta

from kepler_kubefake.clock import Clock
from kepler_kubefake.kinds import Obj, ResourceKind, clone
from kepler_kubefake.store import Store
from kepler_kubefake.workloads import terminal

FOREGROUND = "foregroundDeletion"


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_grace(pod: Obj, requested: object) -> int:
    """`CheckGracefulDelete` for pods."""
    if not (pod.get("spec") or {}).get("nodeName") or terminal(pod):
        return 0
    if requested is not None:
        return max(0, int(str(requested)))
    return int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


def begin(store: Store, clock: Clock, kind: ResourceKind, obj: Obj, policy: str, grace: object) -> Obj | None:
    """Start deleting `obj`; returns the object when it stays for now (Terminating), None once removed.
    Orphaning is the caller's (it rewrites dependents)."""
    if kind.kind == "Pod":
        seconds = pod_grace(obj, grace)
        if seconds > 0:
            return _terminating_pod(store, clock, kind, obj, seconds)
    if policy == "Foreground":
        if obj["metadata"].get("deletionTimestamp"):
            return obj
        marked = clone(obj)
        meta = marked["metadata"]
        meta["deletionTimestamp"], meta["deletionGracePeriodSeconds"] = clock.timestamp(), 0
        meta["finalizers"] = [*(meta.get("finalizers") or []), FOREGROUND]
        store.put(kind, marked)
        return marked
    store.remove(kind, obj)
    return None


def _terminating_pod(store: Store, clock: Clock, kind: ResourceKind, pod: Obj, seconds: int) -> Obj:
    meta = pod["metadata"]
    now = _parse(clock.timestamp())
    due = now + timedelta(seconds=seconds)
    current = meta.get("deletionTimestamp")
    if current and (_parse(current) <= due or meta.get("deletionGracePeriodSeconds", 0) <= seconds):
        return pod
    marked = clone(pod)
    marked["metadata"]["deletionTimestamp"] = _stamp(due)
    marked["metadata"]["deletionGracePeriodSeconds"] = seconds
    store.put(kind, marked)
    return marked
