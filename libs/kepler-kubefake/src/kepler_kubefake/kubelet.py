"""A pretend kubelet: binds pods to the one fake node and walks them to Ready, or to a failure a test asked
for.

Failures come from the image name (`…crashloop…`, `…neverready…`, `…imagepullbackoff…`) or from
`KubeFake.set_pod_behaviour`, so a rollout that never becomes available can be tested end to end.
"""

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import count

from kepler_kubefake.clock import Clock
from kepler_kubefake.events import NODE, EventRecorder
from kepler_kubefake.kinds import Obj
from kepler_kubefake.resources import Api

_pod_ips = count(2)


class PodBehaviour(StrEnum):
    READY = "ready"
    CRASHLOOP = "crashloop"
    NEVER_READY = "neverready"
    IMAGE_PULL_BACKOFF = "imagepullbackoff"


def behaviour_from_images(images: list[str]) -> PodBehaviour:
    for behaviour in (PodBehaviour.CRASHLOOP, PodBehaviour.NEVER_READY, PodBehaviour.IMAGE_PULL_BACKOFF):
        if any(behaviour.value in image.lower() for image in images):
            return behaviour
    return PodBehaviour.READY


@dataclass(slots=True)
class PodRecord:
    """What the kubelet remembers about a pod: when things happened, so the status it reports stays stable."""

    created: float
    start_time: str
    ip: str
    ready_at: float | None = None
    ready_time: str = ""
    running_time: str = ""
    restarts: int = 0
    crash_time: str = ""
    emitted: set[str] = field(default_factory=set)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def qos_class(containers: list[Obj]) -> str:
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(name)
        and (r.get("requests") or {}).get(name, r["limits"][name]) == r["limits"][name]
        for r in resources
        for name in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _condition(type_: str, ok: bool, since: str, reason: str = "", message: str = "") -> Obj:
    out: Obj = {
        "type": type_,
        "status": "True" if ok else "False",
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    if reason:
        out["reason"], out["message"] = reason, message
    return out


class Kubelet:
    def __init__(
        self, api: Api, events: EventRecorder, clock: Clock, ready_delay: float, crash_period: float
    ) -> None:
        self.api, self.events, self.clock = api, events, clock
        self.ready_delay = ready_delay
        self.crash_period = crash_period
        self.kind = api.registry.named("Pod")
        self._records: dict[str, PodRecord] = {}

    def forget(self, uid: str) -> None:
        self._records.pop(uid, None)

    def ready_since(self, pod: Obj) -> float | None:
        record = self._records.get(pod["metadata"]["uid"])
        return record.ready_at if record else None

    def sync(self, pod: Obj, behaviour: PodBehaviour) -> float | None:
        """Advance the pod; returns the real seconds until it next needs a look, or None."""
        if not (pod.get("spec") or {}).get("nodeName"):
            self._bind(pod)
            return None  # the binding is a write: the controller hears of it and comes back
        record = self._record(pod)
        waited = self.clock.now() - record.created
        if waited < self.ready_delay:
            self._set(pod, self._pending(pod, record, "ContainerCreating", ""))
            return self.ready_delay - waited
        if behaviour is PodBehaviour.IMAGE_PULL_BACKOFF:
            self._pull_backoff(pod, record)
            return None
        if behaviour is PodBehaviour.CRASHLOOP:
            return self._crashloop(pod, record, waited - self.ready_delay)
        self._start(pod, record)
        self._set(pod, self._running(pod, record, ready=behaviour is PodBehaviour.READY))
        return None

    def _record(self, pod: Obj) -> PodRecord:
        uid = pod["metadata"]["uid"]
        if uid not in self._records:
            n = next(_pod_ips)
            ip = f"10.244.{n // 250}.{n % 250 + 2}"
            self._records[uid] = PodRecord(self.clock.now(), self.clock.timestamp(), ip)
        return self._records[uid]

    def _bind(self, pod: Obj) -> None:
        bound = {**pod, "spec": {**pod["spec"], "nodeName": NODE}}
        self.api.save(self.kind, bound, "kube-scheduler")
        meta = pod["metadata"]
        message = f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {NODE}"
        self.events.record(pod, "Scheduled", message, component="default-scheduler")

    def _set(self, pod: Obj, status: Obj) -> None:
        self.api.save_status(self.kind, pod, status)

    def _containers(self, pod: Obj) -> list[Obj]:
        return list((pod.get("spec") or {}).get("containers") or [])

    def _emit_once(
        self,
        pod: Obj,
        record: PodRecord,
        key: str,
        reason: str,
        message: str,
        warning: bool = False,
        field_path: str = "",
    ) -> None:
        """Kubelet events that happen once per pod (Pulled, Started…), however often the pod is looked at."""
        if key not in record.emitted:
            record.emitted.add(key)
            self.events.record(pod, reason, message, warning=warning, field_path=field_path)

    def _start(self, pod: Obj, record: PodRecord) -> None:
        for c in self._containers(pod):
            name, image = c["name"], c.get("image", "")
            for reason, message in (
                ("Pulled", f'Successfully pulled image "{image}" in 1ms'),
                ("Created", f"Created container: {name}"),
                ("Started", f"Started container {name}"),
            ):
                self._emit_once(pod, record, f"{reason}/{name}", reason, message, field_path=_field(c))
        record.running_time = record.running_time or self.clock.timestamp()

    def _base(self, pod: Obj, record: PodRecord, phase: str) -> Obj:
        status: Obj = {
            "phase": phase,
            "hostIP": "10.0.0.10",
            "hostIPs": [{"ip": "10.0.0.10"}],
            "startTime": record.start_time,
            "qosClass": qos_class(self._containers(pod)),
        }
        if phase == "Running":
            status["podIP"], status["podIPs"] = record.ip, [{"ip": record.ip}]
        return status

    def _container_status(
        self, pod: Obj, c: Obj, state: Obj, ready: bool, restarts: int = 0, last: Obj | None = None
    ) -> Obj:
        image = c.get("image", "")
        running = "running" in state
        out: Obj = {
            "name": c["name"],
            "state": state,
            "lastState": last or {},
            "ready": ready,
            "restartCount": restarts,
            "image": image,
            "imageID": f"{image.split(':')[0]}@sha256:{_digest(image)}" if running or restarts else "",
            "started": running,
        }
        if running or restarts:
            out["containerID"] = f"containerd://{_digest(pod['metadata']['uid'] + c['name'])}"
        return out

    def _pending(self, pod: Obj, record: PodRecord, reason: str, message: str) -> Obj:
        status = self._base(pod, record, "Pending")
        waiting: Obj = {"reason": reason} | ({"message": message} if message else {})
        names = ", ".join(c["name"] for c in self._containers(pod))
        status["conditions"] = [
            _condition("PodReadyToStartContainers", False, record.start_time),
            _condition("Initialized", True, record.start_time),
            _condition(
                "Ready",
                False,
                record.start_time,
                "ContainersNotReady",
                f"containers with unready status: [{names}]",
            ),
            _condition(
                "ContainersReady",
                False,
                record.start_time,
                "ContainersNotReady",
                f"containers with unready status: [{names}]",
            ),
            _condition("PodScheduled", True, record.start_time),
        ]
        status["containerStatuses"] = [
            self._container_status(pod, c, {"waiting": waiting}, False) for c in self._containers(pod)
        ]
        return status

    def _running(self, pod: Obj, record: PodRecord, ready: bool) -> Obj:
        if ready and record.ready_at is None:
            record.ready_at, record.ready_time = self.clock.now(), self.clock.timestamp()
        status = self._base(pod, record, "Running")
        since = record.ready_time or record.running_time
        names = ", ".join(c["name"] for c in self._containers(pod))
        reason, message = (
            ("", "") if ready else ("ContainersNotReady", f"containers with unready status: [{names}]")
        )
        status["conditions"] = [
            _condition("PodReadyToStartContainers", True, record.running_time),
            _condition("Initialized", True, record.start_time),
            _condition("Ready", ready, since, reason, message),
            _condition("ContainersReady", ready, since, reason, message),
            _condition("PodScheduled", True, record.start_time),
        ]
        state = {"running": {"startedAt": record.running_time}}
        status["containerStatuses"] = [
            self._container_status(pod, c, state, ready) for c in self._containers(pod)
        ]
        if not ready:
            self._emit_once(
                pod,
                record,
                "unhealthy",
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
                warning=True,
            )
        return status

    def _crashloop(self, pod: Obj, record: PodRecord, running_for: float) -> float:
        """Containers exit 1 every `crash_period` Kubernetes seconds: restarts climb, Ready never comes."""
        self._start(pod, record)
        period = max(self.clock.real_seconds(self.crash_period), 1e-3)
        restarts = int(running_for // period) + 1
        if restarts > record.restarts:
            record.restarts, record.crash_time = restarts, self.clock.timestamp()
            self._back_off(pod)
        status = self._running(pod, record, ready=False)
        terminated = {
            "exitCode": 1,
            "reason": "Error",
            "startedAt": record.running_time,
            "finishedAt": record.crash_time,
        }
        message = f"back-off 10s restarting failed container pod={pod['metadata']['name']}"
        waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        status["containerStatuses"] = [
            self._container_status(pod, c, waiting, False, record.restarts, {"terminated": terminated})
            for c in self._containers(pod)
        ]
        self._set(pod, status)
        return period - (running_for % period)

    def _back_off(self, pod: Obj) -> None:
        meta = pod["metadata"]
        pod_id = f"{meta['name']}_{meta.get('namespace')}({meta['uid']})"
        for c in self._containers(pod):
            message = f"Back-off restarting failed container {c['name']} in pod {pod_id}"
            self.events.record(pod, "BackOff", message, warning=True, field_path=_field(c))

    def _pull_backoff(self, pod: Obj, record: PodRecord) -> None:
        for c in self._containers(pod):
            image, path = c.get("image", ""), _field(c)
            failed = f'Failed to pull image "{image}": not found'
            self._emit_once(
                pod, record, f"failed/{c['name']}", "Failed", failed, warning=True, field_path=path
            )
            backoff = f'Back-off pulling image "{image}"'
            self._emit_once(pod, record, f"backoff/{c['name']}", "BackOff", backoff, field_path=path)
        self._set(pod, self._pending(pod, record, "ImagePullBackOff", "Back-off pulling image"))


def _field(container: Obj) -> str:
    """The `fieldPath` kubelet events carry for a container."""
    return f"spec.containers{{{container['name']}}}"
