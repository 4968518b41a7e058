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


def _requested(grace: object) -> int | None:
    """DeleteOptions.gracePeriodSeconds; negative counts as 1 (BeforeDelete)."""
    if grace is None:
        return None
    value = int(str(grace))
    return 1 if value < 0 else value


def pod_grace(pod: Obj, requested: int | None) -> int:
    """`CheckGracefulDelete` for pods (pkg/registry/core/pod/strategy.go)."""
    if not (pod.get("spec") or {}).get("nodeName") or terminal(pod):
        return 0
    if requested is not None:
        return requested
    return int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


def begin(store: Store, clock: Clock, kind: ResourceKind, obj: Obj, policy: str, grace: object) -> Obj | None:
    """Start deleting `obj`; returns the object when it stays for now (Terminating), None once removed.
    Orphaning is the caller's (it rewrites dependents)."""
    requested = _requested(grace)
    if kind.kind == "Pod" and obj["metadata"].get("deletionTimestamp"):
        return _shorten(store, kind, obj, requested)
    if kind.kind == "Pod" and (seconds := pod_grace(obj, requested)) > 0:
        return _mark(
            store, kind, obj, _stamp(_parse(clock.timestamp()) + timedelta(seconds=seconds)), seconds
        )
    if policy == "Foreground":
        if obj["metadata"].get("deletionTimestamp"):
            return obj
        marked = _mark(store, kind, obj, clock.timestamp(), 0, put=False)
        marked["metadata"]["finalizers"] = [*(obj["metadata"].get("finalizers") or []), FOREGROUND]
        store.put(kind, marked)
        return marked
    store.remove(kind, obj)
    return None


def _mark(store: Store, kind: ResourceKind, obj: Obj, when: str, seconds: int, put: bool = True) -> Obj:
    """deletionTimestamp and deletionGracePeriodSeconds set, and the generation bumped (if the object has
    one) so that its controllers see the deletion (rest/delete.go BeforeDelete; registry/store.go
    markAsDeleting)."""
    marked = clone(obj)
    meta = marked["metadata"]
    meta["deletionTimestamp"], meta["deletionGracePeriodSeconds"] = when, seconds
    if meta.get("generation", 0) > 0:
        meta["generation"] += 1
    if put:
        store.put(kind, marked)
    return marked


def _shorten(store: Store, kind: ResourceKind, pod: Obj, requested: int | None) -> Obj | None:
    """A second DELETE may only shorten the grace period; 0 (or none left) deletes at once."""
    meta = pod["metadata"]
    current = int(meta.get("deletionGracePeriodSeconds") or 0)
    if current == 0 or requested == 0:
        store.remove(kind, pod)
        return None
    if requested is None or requested >= current:
        return pod
    shortened = clone(pod)
    due = _parse(meta["deletionTimestamp"]) - timedelta(seconds=current - requested)
    shortened["metadata"]["deletionTimestamp"] = _stamp(due)
    shortened["metadata"]["deletionGracePeriodSeconds"] = requested
    store.put(kind, shortened)
    return shortened
