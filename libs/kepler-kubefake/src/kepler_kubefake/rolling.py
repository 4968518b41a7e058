"""How far the deployment controller scales ReplicaSets in one sync of a RollingUpdate, as pure arithmetic.

Follows pkg/controller/deployment/rolling.go (`reconcileNewReplicaSet`, `reconcileOldReplicaSets`,
`cleanupUnhealthyReplicas`, `scaleDownOldReplicaSetsForRollingUpdate`) and `NewRSNewReplicas` in
pkg/controller/deployment/util/deployment_util.go: the new ReplicaSet grows by at most `maxSurge` above the
desired count, old ones shrink only as far as `maxUnavailable` allows given what is available, so a rollout
proceeds in waves as new pods become available.
"""

from kepler_kubefake.kinds import Obj
from kepler_kubefake.workloads import max_surge, max_unavailable, replicas, spec_of, status_int

Scaling = list[tuple[Obj, int]]  # (ReplicaSet, its new spec.replicas)


def _by_age(rss: list[Obj]) -> list[Obj]:
    return sorted(rss, key=lambda rs: (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"]))


def new_replicas(deployment: Obj, new_rs: Obj, all_rs: list[Obj]) -> int:
    """`NewRSNewReplicas`: the new ReplicaSet's size after this sync."""
    desired = int(spec_of(deployment).get("replicas", 1))
    current = replicas(new_rs)
    if current >= desired:
        return desired
    total = sum(replicas(rs) for rs in all_rs)
    room = desired + max_surge(deployment) - total
    return current + max(0, min(room, desired - current))


def scale_down_old(deployment: Obj, new_rs: Obj, old_rss: list[Obj]) -> Scaling:
    """`reconcileOldReplicaSets`: unhealthy old replicas first, then healthy ones down to minAvailable."""
    old_rss = [rs for rs in old_rss if replicas(rs) > 0]
    if not old_rss:
        return []
    desired = int(spec_of(deployment).get("replicas", 1))
    min_available = desired - max_unavailable(deployment)
    total = replicas(new_rs) + sum(replicas(rs) for rs in old_rss)
    new_unavailable = replicas(new_rs) - status_int(new_rs, "availableReplicas")
    budget = total - min_available - new_unavailable
    if budget <= 0:
        return []
    targets = {rs["metadata"]["uid"]: replicas(rs) for rs in old_rss}
    for rs in _by_age(old_rss):  # cleanupUnhealthyReplicas
        unhealthy = targets[rs["metadata"]["uid"]] - status_int(rs, "availableReplicas")
        cut = min(budget, max(0, unhealthy))
        targets[rs["metadata"]["uid"]] -= cut
        budget -= cut
    available = status_int(new_rs, "availableReplicas") + sum(
        status_int(rs, "availableReplicas") for rs in old_rss
    )
    excess = available - min_available
    for rs in _by_age(old_rss):  # scaleDownOldReplicaSetsForRollingUpdate
        uid = rs["metadata"]["uid"]
        cut = min(targets[uid], max(0, excess))
        targets[uid] -= cut
        excess -= cut
    return [
        (rs, targets[rs["metadata"]["uid"]])
        for rs in old_rss
        if targets[rs["metadata"]["uid"]] != replicas(rs)
    ]
