"""The scheduler's resource fit against the one fake node: a pod that asks for more than is left stays
Pending with `PodScheduled=False/Unschedulable`, as pkg/scheduler/framework/plugins/noderesources/fit.go
decides and pkg/scheduler/schedule_one.go reports it."""

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal

from kepler_kubefake.kinds import Obj

DEFAULT_ALLOCATABLE: Mapping[str, str] = {"cpu": "4", "memory": "16Gi", "pods": "110"}
_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][-+]?[0-9]+|[a-zA-Z]*)$")


def quantity(value: object) -> Decimal:
    """A resource.Quantity as a number (`500m` → 0.5, `1Gi` → 1073741824); unparsable counts as 0 (the
    API server has already rejected it)."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return Decimal(0)
    number, suffix = match.groups()
    if suffix[:1] in ("e", "E"):
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    return Decimal(number) * _SUFFIXES.get(suffix, Decimal(0))


def pod_requests(pod: Obj) -> dict[str, Decimal]:
    """Requests of a pod: the sum over its containers, at least the largest init container's; a container
    with limits but no requests requests its limits (pkg/apis/core/v1/defaults.go, SetDefaults_Pod)."""
    spec = pod.get("spec") or {}
    total = _sum(spec.get("containers") or [])
    for init in spec.get("initContainers") or []:
        for name, amount in _sum([init]).items():
            total[name] = max(total.get(name, Decimal(0)), amount)
    return total


def _sum(containers: Iterable[Obj]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for c in containers:
        resources = c.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, amount in wanted.items():
            total[name] = total.get(name, Decimal(0)) + quantity(amount)
    return total


def insufficient(pod: Obj, placed: Iterable[Obj], allocatable: Mapping[str, str] | None) -> list[str]:
    """The resources the node lacks for `pod` given the pods already on it (empty: it fits)."""
    if allocatable is None:
        return []
    used: dict[str, Decimal] = {}
    count = 0
    for other in placed:
        count += 1
        for name, amount in pod_requests(other).items():
            used[name] = used.get(name, Decimal(0)) + amount
    lacking = ["pods"] if "pods" in allocatable and count + 1 > quantity(allocatable["pods"]) else []
    for name, amount in sorted(pod_requests(pod).items()):
        if (
            name in allocatable
            and amount > 0
            and used.get(name, Decimal(0)) + amount > quantity(allocatable[name])
        ):
            lacking.append(name)
    return lacking


def unschedulable_message(lacking: list[str]) -> str:
    """`0/1 nodes are available: 1 Insufficient cpu. preemption: …` as the scheduler words it."""
    reasons = ", ".join("1 Too many pods" if name == "pods" else f"1 Insufficient {name}" for name in lacking)
    return (
        f"0/1 nodes are available: {reasons}. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod."
    )
