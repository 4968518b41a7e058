"""Reading a Deployment as `kubectl rollout status` does, plus the crash loops kubectl would wait out, and the
pods that only look healthy: a container without a readinessProbe is Ready as soon as it runs
(`pkg/kubelet/prober/prober_manager.go`), so an image that exits after a few seconds completes its rollout
before it crash-loops. Success is decided after the new pods stayed up for a while (`unsteady`)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
# The kubelet's waiting reasons of a container that cannot run (pkg/kubelet/container/sync_result.go,
# pkg/kubelet/images/types.go): none of them mends itself without a change to the pod or the cluster.
CRASH_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
UNSCHEDULABLE = "Unschedulable"
REVISION = "deployment.kubernetes.io/revision"
FAILED_CREATE = "FailedCreate"


@dataclass(frozen=True, kw_only=True)
class Rollout:
    done: bool
    failed: bool
    reason: str | None
    message: str
    desired: int
    updated: int
    ready: int
    available: int
    revision: str | None = None  # the Deployment's `deployment.kubernetes.io/revision`: its new ReplicaSet's

    @property
    def counts(self) -> dict[str, int]:
        return {
            "desired": self.desired,
            "updated": self.updated,
            "ready": self.ready,
            "available": self.available,
        }


def _condition(status: Obj, kind: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def timed_out(deployment: Obj) -> Obj | None:
    """The Progressing condition when it says the progress deadline was exceeded. It outlives the rollout
    that timed out: after a rollback to a ReplicaSet whose pods are still ready, the controller keeps
    reporting it for the new generation until it records progress (as `kubectl rollout status` sees
    after `kubectl rollout undo`)."""
    progressing = _condition(deployment.get("status") or {}, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return progressing
    return None


def _same_condition(condition: Obj, other: Obj | None) -> bool:
    keys = ("reason", "lastUpdateTime", "lastTransitionTime")
    return other is not None and all(condition.get(key) == other.get(key) for key in keys)


def rollout_status(deployment: Obj, stale_timeout: Obj | None = None) -> Rollout:
    """kubectl's order: spec not yet observed; deadline exceeded; updating; old terminating; availability.

    `stale_timeout`: the deadline-exceeded condition the Deployment already carried when this rollout was
    applied (see `timed_out`); while the controller still reports that very condition it is old news,
    not this rollout's failure (the runner's own deadline still bounds the wait)."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    updated, ready = int(status.get("updatedReplicas", 0)), int(status.get("readyReplicas", 0))
    available, total = int(status.get("availableReplicas", 0)), int(status.get("replicas", 0))

    revision = ((deployment.get("metadata") or {}).get("annotations") or {}).get(REVISION)

    def result(done: bool, failed: bool, message: str, reason: str | None = None) -> Rollout:
        return Rollout(
            revision=revision,
            done=done,
            failed=failed,
            reason=reason,
            message=message,
            desired=desired,
            updated=updated,
            ready=ready,
            available=available,
        )

    generation = int((deployment.get("metadata") or {}).get("generation", 0))
    if generation > int(status.get("observedGeneration", 0)):
        return result(False, False, "Waiting for the deployment spec update to be observed")
    progressing = _condition(status, "Progressing")
    if (
        progressing
        and progressing.get("reason") == "ProgressDeadlineExceeded"
        and not _same_condition(progressing, stale_timeout)
    ):
        return result(
            False,
            True,
            progressing.get("message") or "progress deadline exceeded",
            "ProgressDeadlineExceeded",
        )
    failure = _condition(status, "ReplicaFailure")
    if failure and failure.get("status") == "True":
        return result(False, True, failure.get("message") or "pods cannot be created", failure.get("reason"))
    if updated < desired:
        return result(False, False, f"{updated} of {desired} updated replicas are available")
    if total > updated:
        return result(False, False, f"{total - updated} old replicas are pending termination")
    if available < updated:
        return result(False, False, f"{available} of {updated} updated replicas are available")
    return result(True, False, "successfully rolled out")


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    ready: bool
    restarts: int
    waiting_reason: str | None
    node: str | None
    release: str | None

    @classmethod
    def of(cls, pod: Obj) -> "PodState":
        status = pod.get("status") or {}
        containers = status.get("containerStatuses") or []
        waiting = next(
            (
                c["state"]["waiting"].get("reason")
                for c in containers
                if (c.get("state") or {}).get("waiting")
            ),
            _unscheduled(status),
        )
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        metadata = pod.get("metadata") or {}
        return cls(
            name=metadata.get("name", ""),
            phase=status.get("phase", "Unknown"),
            ready=ready,
            restarts=sum(int(c.get("restartCount", 0)) for c in containers),
            waiting_reason=waiting,
            node=(pod.get("spec") or {}).get("nodeName"),
            release=(metadata.get("annotations") or {}).get("kepler.dev/release"),
        )


def replica_failure(replica_set: Obj, revision: str | None) -> bool:
    """Whether this ReplicaSet is the Deployment's new one (same revision) and cannot create its pods. The
    Deployment's own ReplicaFailure may be an older ReplicaSet's, copied over until the ReplicaSet
    controller clears it (pkg/controller/deployment/progress.go, `getReplicaFailures`): after a rollback,
    that is the failed release's condition, not the rollback's."""
    annotations = (replica_set.get("metadata") or {}).get("annotations") or {}
    failure = _condition(replica_set.get("status") or {}, "ReplicaFailure")
    return annotations.get(REVISION) == revision and failure is not None and failure.get("status") == "True"


def _unscheduled(status: Obj) -> str | None:
    """An Unschedulable pod has no container statuses, only `PodScheduled=False` (pkg/scheduler)."""
    scheduled = _condition(status, "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == UNSCHEDULABLE:
        return UNSCHEDULABLE
    return None


def unsteady(pods: list[PodState], release: int, before: Mapping[str, int]) -> PodState | None:
    """A pod of this release that restarted since the deployment began (`before`: restarts of the pods
    that already ran then; a pod that runs unchanged since last month keeps last month's restarts), or
    cannot run. One restart is enough: the rollout counted the pod available and will not look again."""
    for pod in pods:
        if pod.release != str(release):
            continue
        if pod.restarts > before.get(pod.name, 0) or pod.waiting_reason in CRASH_REASONS:
            return pod
    return None


def crash_looping(pods: list[PodState], release: int, threshold: int) -> PodState | None:
    """A pod of this release that keeps failing: waiting out the deadline would only delay the rollback."""
    for pod in pods:
        if pod.release != str(release):
            continue
        if pod.waiting_reason in CRASH_REASONS and (
            pod.restarts >= threshold or pod.waiting_reason != "CrashLoopBackOff"
        ):
            return pod
    return None


def ended(reason: str, message: str, counts: Mapping[str, int]) -> Rollout:
    """A rollout Kepler ends itself (its deadline, a deleted Deployment, a crash loop), at the counts
    last seen."""
    return Rollout(
        done=False,
        failed=True,
        reason=reason,
        message=message,
        desired=counts.get("desired", 0),
        updated=counts.get("updated", 0),
        ready=counts.get("ready", 0),
        available=counts.get("available", 0),
    )
