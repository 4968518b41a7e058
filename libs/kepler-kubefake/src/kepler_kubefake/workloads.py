"""Pure pieces of the Deployment and ReplicaSet controllers: names, hashes, owned objects, status
arithmetic."""

import json
import math
import secrets

from kepler_kubefake.kinds import Obj, clone

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
NO_DEADLINE = 2147483647
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def _safe_encode(text: str) -> str:
    """apimachinery's `rand.SafeEncodeString`: no vowels, so a hash never spells a word."""
    return "".join(_ALPHANUMS[ord(ch) % len(_ALPHANUMS)] for ch in text)


def pod_template_hash(template: Obj, collision_count: int = 0) -> str:
    """Same shape as the real `pod-template-hash` (FNV-32a, safe-encoded); stable for equal templates."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return _safe_encode(str(_fnv32a(data + str(collision_count).encode() if collision_count else data)))


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_ALPHANUMS) for _ in range(length))


def owner_reference(owner: Obj) -> Obj:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def revision(obj: Obj) -> int:
    try:
        return int((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def spec_of(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def status_int(obj: Obj, name: str) -> int:
    return int((obj.get("status") or {}).get(name) or 0)


def resolve_int_or_percent(value: object, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = total * int(value[:-1]) / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0


def fenceposts(deployment: Obj) -> tuple[int, int]:
    """`ResolveFenceposts` (pkg/controller/deployment/util): (maxSurge, maxUnavailable), surge rounded up
    and unavailable down; both 0 would stall, so unavailable becomes 1."""
    spec = spec_of(deployment)
    desired = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = resolve_int_or_percent(rolling.get("maxSurge", "25%"), desired, round_up=True)
    unavailable = resolve_int_or_percent(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_recreate(deployment: Obj) -> bool:
    return (spec_of(deployment).get("strategy") or {}).get("type") == "Recreate"


def max_unavailable(deployment: Obj) -> int:
    desired = int(spec_of(deployment).get("replicas", 1))
    if is_recreate(deployment) or desired == 0:
        return 0
    return min(fenceposts(deployment)[1], desired)


def max_surge(deployment: Obj) -> int:
    return 0 if is_recreate(deployment) else fenceposts(deployment)[0]


def new_replicaset(deployment: Obj, template_hash: str, rev: int) -> Obj:
    meta, spec = deployment["metadata"], spec_of(deployment)
    template = clone(spec.get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = template_hash
    selector = clone(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
    annotations = {
        REVISION: str(rev),
        DESIRED_REPLICAS: str(spec.get("replicas", 1)),
        MAX_REPLICAS: str(spec.get("replicas", 1)),
    }
    rs_spec: Obj = {"replicas": 0, "selector": selector, "template": template}
    if spec.get("minReadySeconds"):
        rs_spec["minReadySeconds"] = spec["minReadySeconds"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{template_hash}",
            "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": annotations,
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": rs_spec,
    }


def new_pod(replicaset: Obj) -> Obj:
    template = spec_of(replicaset).get("template") or {}
    template_meta = template.get("metadata") or {}
    meta: Obj = {
        "name": f"{replicaset['metadata']['name']}-{random_suffix()}",
        "generateName": f"{replicaset['metadata']['name']}-",
        "namespace": replicaset["metadata"]["namespace"],
        "labels": dict(template_meta.get("labels") or {}),
        "ownerReferences": [owner_reference(replicaset)],
    }
    if template_meta.get("annotations"):
        meta["annotations"] = dict(template_meta["annotations"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": clone(template.get("spec") or {}),
    }


def replica_failure(rss: list[Obj]) -> Obj | None:
    """The first ReplicaSet ReplicaFailure=True condition, as a Deployment condition
    (pkg/controller/deployment/util, ReplicaSetToDeploymentCondition)."""
    for rs in rss:
        for c in (rs.get("status") or {}).get("conditions") or []:
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
                since = c.get("lastTransitionTime")
                return {**c, "lastUpdateTime": since, "lastTransitionTime": since}
    return None


def terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def active(pod: Obj) -> bool:
    """`FilterActivePods` (pkg/controller/controller_utils.go): not finished and not being deleted."""
    return not terminal(pod) and not pod["metadata"].get("deletionTimestamp")


def replicas(rs: Obj) -> int:
    return int(spec_of(rs).get("replicas", 0))


def pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def compact(status: Obj) -> Obj:
    """Drop zero counters: the real status fields are `omitempty`, so clients see absent, not 0."""
    return {k: v for k, v in status.items() if v not in (0, None, [])}
