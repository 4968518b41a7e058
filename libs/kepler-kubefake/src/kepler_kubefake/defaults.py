"""The defaults the real API server fills in, for the fields clients read back.

Only the defaults Kepler (or `kubectl rollout status`) looks at, plus those that make a re-apply of the same
manifest a no-op in the real server too (protocols, policies): a client that reads `progressDeadlineSeconds`
or a Service's `clusterIP` sees what it would see on a cluster.
"""

import base64
import ipaddress
from collections.abc import Callable
from itertools import count
from typing import Any

from kepler_kubefake.fields import MERGE_KEYS
from kepler_kubefake.kinds import Obj

_cluster_ips = count(10)


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _container(c: Obj) -> None:
    if "image" in c:
        c.setdefault("imagePullPolicy", _image_pull_policy(str(c["image"])))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")


def pod_spec(spec: Obj) -> None:
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        _container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")


def _template(spec: Obj) -> None:
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec(template.setdefault("spec", {}))


def deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
    _template(spec)


def replicaset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _template(spec)


def pod(obj: Obj) -> None:
    pod_spec(obj.setdefault("spec", {}))
    obj["spec"].setdefault("enableServiceLinks", True)


def _next_cluster_ip() -> str:
    return str(ipaddress.ip_address("10.96.0.0") + next(_cluster_ips))


def service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec.get("clusterIP") != "None":
        spec.setdefault("clusterIP", _next_cluster_ip())
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))


def namespace(obj: Obj) -> None:
    labels = obj["metadata"].setdefault("labels", {})
    labels.setdefault("kubernetes.io/metadata.name", obj["metadata"]["name"])
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])


def secret(obj: Obj) -> None:
    """`stringData` is write-only: the real server folds it into base64 `data`."""
    obj.setdefault("type", "Opaque")
    string_data: dict[str, Any] = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def job(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


def cronjob(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job(spec.setdefault("jobTemplate", {}))


DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Deployment": deployment,
    "ReplicaSet": replicaset,
    "Pod": pod,
    "Service": service,
    "Namespace": namespace,
    "Secret": secret,
    "Job": job,
    "CronJob": cronjob,
}


def _omit_empty(node: Any) -> None:
    """Kubernetes' list fields are `omitempty`: `env: []` is stored (and served) as no `env` at all, whether
    it came by POST, PUT, patch or apply, so the same object always reads the same (and hashes the same
    into a ReplicaSet's pod-template-hash)."""
    if isinstance(node, dict):
        for key in [k for k, v in node.items() if v == [] and (k == "ports" or k in MERGE_KEYS)]:
            del node[key]
        for value in node.values():
            _omit_empty(value)
    elif isinstance(node, list):
        for item in node:
            _omit_empty(item)


def apply_defaults(obj: Obj) -> None:
    """Fill defaults in place; the caller owns `obj` (a fresh copy)."""
    _omit_empty(obj)
    defaulter = DEFAULTERS.get(obj.get("kind", ""))
    if defaulter is not None:
        defaulter(obj)
