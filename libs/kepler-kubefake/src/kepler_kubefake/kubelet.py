"""A pretend kubelet (with the scheduler's fit check): binds pods to the one fake node and reports what their
containers do, with the timing of a real node.

A container takes `start_delay` to start (image pull, create, start). Without a readinessProbe it is Ready as
soon as it runs (pkg/kubelet/prober/prober_manager.go); with one, at the first probe tick after
`initialDelaySeconds` (pkg/kubelet/prober/worker.go). Crashing containers restart with CrashLoopBackOff
(see `restarts.py`), unpullable images alternate ErrImagePull and ImagePullBackOff, a missing ConfigMap or
Secret is CreateContainerConfigError until it appears, and a deleted pod is removed once its containers
exit (at once on SIGTERM, or after the grace period when they ignore it).
"""

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import count

from kepler_kubefake import scheduler
from kepler_kubefake.behaviours import Behaviour, PodBehaviour
from kepler_kubefake.clock import Clock, rfc3339
from kepler_kubefake.events import NODE, EventRecorder
from kepler_kubefake.kinds import Obj
from kepler_kubefake.resources import Api
from kepler_kubefake.restarts import Moment, crash_timeline, pull_timeline
from kepler_kubefake.workloads import terminal

_pod_ips = count(2)
SIGTERM_EXIT = 1.0  # Kubernetes seconds a container that handles SIGTERM takes to exit
CRASHING = (PodBehaviour.CRASHLOOP, PodBehaviour.CRASH_AFTER)


@dataclass(slots=True)
class PodRecord:
    """What the kubelet remembers about a pod: when things happened, so the status it reports stays stable."""

    namespace: str
    name: str
    created: float  # monotonic: the pod was admitted (probe workers tick from here)
    wall: float  # the same moment on the wall clock, for timestamps
    ip: str
    started: float | None = None  # monotonic: the containers first started
    ready_at: float | None = None
    stopping: float | None = None
    config_error: str = ""
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


def _containers(pod: Obj) -> list[Obj]:
    return list((pod.get("spec") or {}).get("containers") or [])


def _field(container: Obj) -> str:
    """The `fieldPath` kubelet events carry for a container."""
    return f"spec.containers{{{container['name']}}}"


def _pod_id(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta['name']}_{meta.get('namespace')}({meta['uid']})"


class Kubelet:
    def __init__(
        self,
        api: Api,
        events: EventRecorder,
        clock: Clock,
        start_delay: float,
        crash_run: float = 0.0,
        allocatable: Mapping[str, str] | None = scheduler.DEFAULT_ALLOCATABLE,
    ) -> None:
        self.api, self.events, self.clock = api, events, clock
        self.start_delay = start_delay
        self.crash_run = crash_run
        self.allocatable = allocatable
        self.kind = api.registry.named("Pod")
        self._records: dict[str, PodRecord] = {}

    def forget(self, uid: str) -> None:
        self._records.pop(uid, None)

    def ready_since(self, pod: Obj) -> float | None:
        record = self._records.get(pod["metadata"]["uid"])
        return record.ready_at if record else None

    def waiting_for_config(self, namespace: str) -> list[str]:
        """Pods of a namespace blocked on a missing ConfigMap or Secret (looked at again when one appears)."""
        return [r.name for r in self._records.values() if r.namespace == namespace and r.config_error]

    def sync(self, pod: Obj, behaviour: Behaviour) -> float | None:
        """Advance the pod; returns the real seconds until it next needs a look, or None."""
        if pod["metadata"].get("deletionTimestamp"):
            return self._terminate(pod, behaviour)
        if not (pod.get("spec") or {}).get("nodeName"):
            self._schedule(pod)
            return None  # bound: the write brings the controller back; unschedulable: a deletion does
        record = self._record(pod)
        now = self.clock.now()
        if now - record.created < self.start_delay:
            self._set(pod, self._pending(pod, record, "ContainerCreating", ""))
            return record.created + self.start_delay - now
        if behaviour.kind is PodBehaviour.IMAGE_PULL_BACKOFF:
            return self._pull_backoff(pod, record, now)
        if self._blocked_on_config(pod, record):
            return None
        if record.started is None:
            record.started = now
        if behaviour.kind in CRASHING:
            return self._crashing(pod, record, behaviour, now)
        self._start(pod, record, 0)
        ready_at = None
        if behaviour.kind is PodBehaviour.NEVER_READY:
            message = "Readiness probe failed: HTTP probe failed with statuscode: 503"
            self._emit_once(pod, record, "unhealthy", "Unhealthy", message, warning=True)
        else:
            ready_at = self._ready_at(pod, record, record.started)
        self._set(pod, self._running(pod, record, record.started, ready_at, now))
        return ready_at - now if ready_at is not None and ready_at > now else None

    # ---- time

    def _k8s(self, record: PodRecord, now: float) -> float:
        """Kubernetes seconds since the containers first started."""
        return (now - (record.started or now)) / max(self.clock.time_scale, 1e-12)

    def _real(self, record: PodRecord, k8s_offset: float) -> float:
        return (record.started or record.created) + self.clock.real_seconds(k8s_offset)

    def _stamp(self, record: PodRecord, moment: float) -> str:
        return rfc3339(record.wall + (moment - record.created))

    def _ready_at(self, pod: Obj, record: PodRecord, run_start: float) -> float:
        """When every container of a run that started at `run_start` is Ready: at once without a probe,
        else at the first probe tick after initialDelaySeconds, successThreshold ticks in a row."""
        ready = run_start
        for c in _containers(pod):
            probe = c.get("readinessProbe")
            if not probe:
                continue
            period = max(self.clock.real_seconds(float(probe.get("periodSeconds", 10))), 1e-6)
            earliest = run_start + self.clock.real_seconds(float(probe.get("initialDelaySeconds", 0)))
            ticks = max(0, -(-(earliest - record.created) // period))
            first = record.created + ticks * period
            ready = max(ready, first + (int(probe.get("successThreshold", 1)) - 1) * period)
        return ready

    # ---- scheduling and records

    def _schedule(self, pod: Obj) -> None:
        placed = [
            p
            for p in self.api.store.objects(self.kind)
            if (p.get("spec") or {}).get("nodeName") == NODE and not terminal(p)
        ]
        lacking = scheduler.insufficient(pod, placed, self.allocatable)
        if lacking:
            self._unschedulable(pod, scheduler.unschedulable_message(lacking))
            return
        bound = {**pod, "spec": {**pod["spec"], "nodeName": NODE}}
        self.api.save(self.kind, bound, "kube-scheduler")
        meta = pod["metadata"]
        message = f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {NODE}"
        self.events.record(pod, "Scheduled", message, component="default-scheduler")

    def _unschedulable(self, pod: Obj, message: str) -> None:
        previous: Obj = next(
            (c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"), {}
        )
        since = previous.get("lastTransitionTime") or self.clock.timestamp()
        status: Obj = {
            "phase": "Pending",
            "conditions": [_condition("PodScheduled", False, since, "Unschedulable", message)],
            "qosClass": qos_class(_containers(pod)),
        }
        self._set(pod, status)
        self.events.record(pod, "FailedScheduling", message, warning=True, component="default-scheduler")

    def _record(self, pod: Obj) -> PodRecord:
        uid = pod["metadata"]["uid"]
        if uid not in self._records:
            n = next(_pod_ips)
            ip = f"10.244.{n // 250}.{n % 250 + 2}"
            meta = pod["metadata"]
            self._records[uid] = PodRecord(
                meta.get("namespace", ""), meta["name"], self.clock.now(), time.time(), ip
            )
        return self._records[uid]

    def _set(self, pod: Obj, status: Obj) -> None:
        self.api.save_status(self.kind, pod, status)

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
        """Kubelet events that happen once per occasion (per run, per pull attempt…), however often the pod
        is looked at; repeats of the same event are counted by the recorder."""
        if key not in record.emitted:
            record.emitted.add(key)
            self.events.record(pod, reason, message, warning=warning, field_path=field_path)

    # ---- running

    def _start(self, pod: Obj, record: PodRecord, run: int) -> None:
        for c in _containers(pod):
            name, image = c["name"], c.get("image", "")
            pulled = (
                f'Successfully pulled image "{image}" in 1.2s (1.2s including waiting)'
                if run == 0
                else f'Container image "{image}" already present on machine'
            )
            for reason, message in (
                ("Pulled", pulled),
                ("Created", f"Created container: {name}"),
                ("Started", f"Started container {name}"),
            ):
                self._emit_once(pod, record, f"{run}/{reason}/{name}", reason, message, field_path=_field(c))

    def _base(self, pod: Obj, record: PodRecord, phase: str) -> Obj:
        status: Obj = {
            "phase": phase,
            "hostIP": "10.0.0.10",
            "hostIPs": [{"ip": "10.0.0.10"}],
            "startTime": self._stamp(record, record.created),
            "qosClass": qos_class(_containers(pod)),
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
            out["containerID"] = f"containerd://{_digest(pod['metadata']['uid'] + c['name'] + str(restarts))}"
        return out

    def _conditions(self, pod: Obj, record: PodRecord, ready: bool, since: str, started: bool) -> list[Obj]:
        created = self._stamp(record, record.created)
        names = ", ".join(c["name"] for c in _containers(pod))
        reason, message = (
            ("", "") if ready else ("ContainersNotReady", f"containers with unready status: [{names}]")
        )
        return [
            _condition("PodReadyToStartContainers", started, created),
            _condition("Initialized", True, created),
            _condition("Ready", ready, since, reason, message),
            _condition("ContainersReady", ready, since, reason, message),
            _condition("PodScheduled", True, created),
        ]

    def _pending(self, pod: Obj, record: PodRecord, reason: str, message: str) -> Obj:
        status = self._base(pod, record, "Pending")
        waiting: Obj = {"reason": reason} | ({"message": message} if message else {})
        created = self._stamp(record, record.created)
        status["conditions"] = self._conditions(pod, record, False, created, reason != "ContainerCreating")
        status["containerStatuses"] = [
            self._container_status(pod, c, {"waiting": waiting}, False) for c in _containers(pod)
        ]
        return status

    def _running(
        self,
        pod: Obj,
        record: PodRecord,
        run_start: float,
        ready_at: float | None,
        now: float,
        restarts: int = 0,
        last: Obj | None = None,
    ) -> Obj:
        ready = ready_at is not None and now >= ready_at
        if ready and record.ready_at is None:
            record.ready_at = ready_at
        if not ready:
            record.ready_at = None
        status = self._base(pod, record, "Running")
        since = self._stamp(record, ready_at if ready and ready_at is not None else run_start)
        status["conditions"] = self._conditions(pod, record, ready, since, True)
        state = {"running": {"startedAt": self._stamp(record, run_start)}}
        status["containerStatuses"] = [
            self._container_status(pod, c, state, ready, restarts, last) for c in _containers(pod)
        ]
        return status

    # ---- failing

    def _crashing(self, pod: Obj, record: PodRecord, behaviour: Behaviour, now: float) -> float | None:
        """Runs that end in an exit, restarted with the kubelet's back-off (restarts.py)."""
        run = behaviour.seconds if behaviour.kind is PodBehaviour.CRASH_AFTER else self.crash_run
        moment = crash_timeline(run, self._k8s(record, now))
        last = self._terminated(record, moment, behaviour.exit_code) if moment.finished is not None else None
        if moment.running:
            self._start(pod, record, moment.restarts)
            run_start = self._real(record, moment.started)
            ready_at = self._ready_at(pod, record, run_start)
            self._set(pod, self._running(pod, record, run_start, ready_at, now, moment.restarts, last))
            wake = [t for t in (ready_at, self._real(record, moment.next_change or 0)) if t > now]
            return min(wake) - now if wake else None
        self._start(pod, record, max(0, moment.restarts - 1))
        self._back_off(pod, record, moment)
        status = self._running(pod, record, now, None, now, moment.restarts, last)
        message = f"back-off {moment.backoff:g}s restarting failed container="
        status["containerStatuses"] = [
            self._container_status(
                pod,
                c,
                {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"{message}{c['name']} pod={_pod_id(pod)}",
                    }
                },
                False,
                moment.restarts,
                last,
            )
            for c in _containers(pod)
        ]
        self._set(pod, status)
        return self._real(record, moment.next_change or 0) - now if moment.next_change is not None else None

    def _terminated(self, record: PodRecord, moment: Moment, exit_code: int) -> Obj:
        return {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": self._stamp(record, self._real(record, moment.started)),
                "finishedAt": self._stamp(record, self._real(record, moment.finished or 0)),
            }
        }

    def _back_off(self, pod: Obj, record: PodRecord, moment: Moment) -> None:
        for c in _containers(pod):
            message = f"Back-off restarting failed container {c['name']} in pod {_pod_id(pod)}"
            key = f"backoff/{moment.restarts}/{c['name']}"
            self._emit_once(pod, record, key, "BackOff", message, warning=True, field_path=_field(c))

    def _pull_backoff(self, pod: Obj, record: PodRecord, now: float) -> float:
        """ErrImagePull at each attempt, ImagePullBackOff in between (pkg/kubelet/images/image_manager.go)."""
        failed, backoff, next_change = pull_timeline(
            (now - record.created - self.start_delay) / max(self.clock.time_scale, 1e-12)
        )
        for c in _containers(pod):
            image, path, name = c.get("image", ""), _field(c), c["name"]
            if failed:
                err = f'failed to pull and unpack image "{image}": not found'
                for reason, message, warning in (
                    ("Pulling", f'Pulling image "{image}"', False),
                    ("Failed", f'Failed to pull image "{image}": {err}', True),
                    ("Failed", "Error: ErrImagePull", True),
                ):
                    self._emit_once(pod, record, f"pull{backoff}/{message}", reason, message, warning, path)
            else:
                for reason, message, warning in (
                    ("BackOff", f'Back-off pulling image "{image}"', False),
                    ("Failed", "Error: ImagePullBackOff", True),
                ):
                    self._emit_once(
                        pod, record, f"backoff{backoff}/{name}/{reason}", reason, message, warning, path
                    )
        reason = "ErrImagePull" if failed else "ImagePullBackOff"
        image = (_containers(pod) or [{}])[0].get("image", "")
        message = (
            f'failed to pull and unpack image "{image}": not found'
            if failed
            else f'Back-off pulling image "{image}"'
        )
        self._set(pod, self._pending(pod, record, reason, message))
        return record.created + self.start_delay + self.clock.real_seconds(next_change) - now

    def _blocked_on_config(self, pod: Obj, record: PodRecord) -> bool:
        """CreateContainerConfigError while an env source is missing (pkg/kubelet/kubelet_pods.go,
        makeEnvironmentVariables); the container starts once it appears."""
        error = self._missing_config(pod)
        if not error:
            record.config_error = ""
            return False
        if error != record.config_error:
            record.config_error = error
            for c in _containers(pod):
                self.events.record(pod, "Failed", f"Error: {error}", warning=True, field_path=_field(c))
        self._set(pod, self._pending(pod, record, "CreateContainerConfigError", error))
        return True

    def _missing_config(self, pod: Obj) -> str:
        namespace = pod["metadata"].get("namespace", "")
        for c in _containers(pod):
            for source in c.get("envFrom") or []:
                for kind, ref_name in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    ref = source.get(ref_name)
                    if (
                        ref
                        and not ref.get("optional")
                        and self._config(kind, namespace, ref.get("name", "")) is None
                    ):
                        return f'{kind.lower()} "{ref.get("name", "")}" not found'
            for env in c.get("env") or []:
                if error := self._missing_key(namespace, env.get("valueFrom") or {}):
                    return error
        return ""

    def _missing_key(self, namespace: str, value_from: Obj) -> str:
        for kind, ref_name in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            ref = value_from.get(ref_name)
            if not ref or ref.get("optional"):
                continue
            obj = self._config(kind, namespace, ref.get("name", ""))
            if obj is None:
                return f'{kind.lower()} "{ref.get("name", "")}" not found'
            keys = {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}
            if ref.get("key") not in keys:
                return f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name')}"
        return ""

    def _config(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.api.store.get(self.api.registry.named(kind), namespace, name)

    # ---- stopping

    def _terminate(self, pod: Obj, behaviour: Behaviour) -> float | None:
        """A deleted pod's containers get SIGTERM; the pod object goes once they have exited (the kubelet's
        final delete, pkg/kubelet/status/status_manager.go), at most after its grace period."""
        record = self._records.get(pod["metadata"]["uid"])
        if record is None or record.started is None:
            self.api.remove(self.kind, pod)
            return None
        now = self.clock.now()
        if record.stopping is None:
            record.stopping = now
            for c in _containers(pod):
                message = f"Stopping container {c['name']}"
                self._emit_once(pod, record, f"kill/{c['name']}", "Killing", message, field_path=_field(c))
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        takes = grace if behaviour.kind is PodBehaviour.IGNORE_SIGTERM else min(grace, SIGTERM_EXIT)
        due = record.stopping + self.clock.real_seconds(takes)
        if now >= due:
            self.api.remove(self.kind, pod)
            return None
        return due - now
