"""Deployment status and conditions, computed the way the real deployment controller does.

Mirrors `calculateStatus` and `syncRolloutStatus` (pkg/controller/deployment): Available from maxUnavailable,
Progressing through NewReplicaSetCreated → ReplicaSetUpdated → NewReplicaSetAvailable, or
ProgressDeadlineExceeded when no progress was seen for `progressDeadlineSeconds` (in Kubernetes seconds,
scaled by the clock).
"""

from dataclasses import dataclass

from kepler_kubefake.kinds import Obj, clone
from kepler_kubefake.workloads import NO_DEADLINE, compact, max_unavailable, spec_of, status_int

PROGRESSING = "Progressing"
AVAILABLE = "Available"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
NEW_RS_CREATED = "NewReplicaSetCreated"
RS_UPDATED = "ReplicaSetUpdated"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
REPLICA_FAILURE = "ReplicaFailure"


@dataclass(frozen=True, slots=True)
class RolloutInput:
    deployment: Obj
    new_rs: Obj
    all_rs: list[Obj]
    created: bool
    timestamp: str
    timed_out: bool  # no progress for progressDeadlineSeconds, judged by the caller's scaled clock
    paused: bool = False


def get_condition(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def set_condition(status: Obj, new: Obj) -> None:
    """`SetDeploymentCondition`: same status and reason is no change; same status keeps the transition
    time."""
    current = get_condition(status, new["type"])
    if current and current["status"] == new["status"] and current.get("reason") == new.get("reason"):
        return
    if current and current["status"] == new["status"]:
        new["lastTransitionTime"] = current["lastTransitionTime"]
    status["conditions"] = [c for c in status.get("conditions") or [] if c["type"] != new["type"]] + [new]


def condition(type_: str, ok: bool | None, reason: str, message: str, now: str) -> Obj:
    return {
        "type": type_,
        "status": "Unknown" if ok is None else "True" if ok else "False",
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def has_deadline(deployment: Obj) -> bool:
    return bool(spec_of(deployment).get("progressDeadlineSeconds", 600) != NO_DEADLINE)


def counts(deployment: Obj, new_rs: Obj, all_rs: list[Obj]) -> Obj:
    available = sum(status_int(rs, "availableReplicas") for rs in all_rs)
    total = sum(int(spec_of(rs).get("replicas", 0)) for rs in all_rs)
    return {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": sum(status_int(rs, "replicas") for rs in all_rs),
        "updatedReplicas": status_int(new_rs, "replicas"),
        "readyReplicas": sum(status_int(rs, "readyReplicas") for rs in all_rs),
        "availableReplicas": available,
        "unavailableReplicas": max(0, total - available),
    }


def is_complete(deployment: Obj, status: Obj) -> bool:
    desired = spec_of(deployment).get("replicas", 1)
    return bool(
        status.get("updatedReplicas", 0) == desired
        and status.get("replicas", 0) == desired
        and status.get("availableReplicas", 0) == desired
        and status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 1)
    )


def made_progress(old: Obj, new: Obj) -> bool:
    """`DeploymentProgressing`: more updated, ready or available replicas, or fewer old ones."""
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = new.get("replicas", 0) - new.get("updatedReplicas", 0)
    return bool(
        new.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
        or new_old < old_old
        or new.get("readyReplicas", 0) > old.get("readyReplicas", 0)
        or new.get("availableReplicas", 0) > old.get("availableReplicas", 0)
    )


def _available(deployment: Obj, status: Obj, now: str) -> None:
    desired = spec_of(deployment).get("replicas", 1)
    if status.get("availableReplicas", 0) >= desired - max_unavailable(deployment):
        set_condition(
            status,
            condition(
                AVAILABLE, True, "MinimumReplicasAvailable", "Deployment has minimum availability.", now
            ),
        )
    else:
        set_condition(
            status,
            condition(
                AVAILABLE,
                False,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
            ),
        )


def _progressing(inp: RolloutInput, status: Obj) -> bool:
    """Update the Progressing condition; True when progress was recorded (the deadline restarts)."""
    current = get_condition(status, PROGRESSING)
    settled = status.get("replicas") == status.get("updatedReplicas") and _reason(current) == NEW_RS_AVAILABLE
    if not has_deadline(inp.deployment) or settled:
        return False
    if is_complete(inp.deployment, status):
        set_condition(status, _progress(inp, True, NEW_RS_AVAILABLE, "has successfully progressed."))
        return False
    if made_progress(compact(inp.deployment.get("status") or {}), status):
        _replace_progressing(status, current, _progress(inp, True, RS_UPDATED, "is progressing."))
        return True
    if current and _reason(current) != NEW_RS_AVAILABLE and (_reason(current) == TIMED_OUT or inp.timed_out):
        set_condition(status, _progress(inp, False, TIMED_OUT, "has timed out progressing."))
    return False


def _reason(cond: Obj | None) -> str:
    return str((cond or {}).get("reason", ""))


def _progress(inp: RolloutInput, ok: bool, reason: str, what: str) -> Obj:
    message = f'ReplicaSet "{inp.new_rs["metadata"]["name"]}" {what}'
    return condition(PROGRESSING, ok, reason, message, inp.timestamp)


def _replace_progressing(status: Obj, current: Obj | None, new: Obj) -> None:
    """Progress always refreshes lastUpdateTime (unlike `set_condition`), keeping the transition time."""
    if current and current["status"] == "True":
        new["lastTransitionTime"] = current["lastTransitionTime"]
    status["conditions"] = [c for c in status.get("conditions") or [] if c["type"] != PROGRESSING] + [new]


def _paused(inp: RolloutInput, status: Obj) -> None:
    """`checkPausedConditions` (sync.go): Progressing=Unknown while paused, DeploymentResumed after; a
    reported timeout is not overwritten."""
    current = _reason(get_condition(status, PROGRESSING))
    if not has_deadline(inp.deployment) or current == TIMED_OUT:
        return
    if inp.paused and current != PAUSED:
        set_condition(status, condition(PROGRESSING, None, PAUSED, "Deployment is paused", inp.timestamp))
    elif not inp.paused and current == PAUSED:
        set_condition(status, condition(PROGRESSING, None, RESUMED, "Deployment is resumed", inp.timestamp))


def _replica_failure(status: Obj, failure: Obj | None) -> None:
    """A ReplicaSet's ReplicaFailure condition, moved onto the Deployment (progress.go,
    getReplicaFailures)."""
    if failure is None:
        status["conditions"] = [c for c in status["conditions"] if c["type"] != REPLICA_FAILURE]
    else:
        set_condition(status, failure)


def deployment_status(inp: RolloutInput, failure: Obj | None = None) -> tuple[Obj, bool]:
    """The new status and whether progress was recorded now (so the caller restarts its deadline clock)."""
    previous = inp.deployment.get("status") or {}
    status: Obj = counts(inp.deployment, inp.new_rs, inp.all_rs)
    status["conditions"] = clone(previous.get("conditions") or [])
    _paused(inp, status)
    progressed = False
    if inp.created and has_deadline(inp.deployment):
        message = f'Created new replica set "{inp.new_rs["metadata"]["name"]}"'
        set_condition(status, condition(PROGRESSING, True, NEW_RS_CREATED, message, inp.timestamp))
        progressed = True
    _available(inp.deployment, status, inp.timestamp)
    if not inp.paused:
        progressed = _progressing(inp, status) or progressed
        _replica_failure(status, failure)
    if previous.get("collisionCount"):
        status["collisionCount"] = previous["collisionCount"]
    return compact(status), progressed
