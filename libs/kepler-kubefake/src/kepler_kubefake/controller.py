"""The controllers: Deployment → ReplicaSets → Pods, run as one background task that reacts to store changes.

Like the real controller manager it is level-triggered: a change marks the objects it affects dirty, and a
reconcile re-derives everything from current state, so repeated or coalesced wake-ups are harmless. Timers
(pods turning Ready, crash loops, progress deadlines) are wake-ups scheduled on the event loop.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping

from kepler_kubefake import rolling
from kepler_kubefake.behaviours import Behaviour, behaviour_from_images
from kepler_kubefake.clock import Clock
from kepler_kubefake.events import EventRecorder
from kepler_kubefake.garbage import GC_DELAY, GarbageCollector
from kepler_kubefake.kinds import Obj, ResourceKind
from kepler_kubefake.kubelet import Kubelet
from kepler_kubefake.resources import Api
from kepler_kubefake.rollout import PROGRESSING, RolloutInput, deployment_status, get_condition, has_deadline
from kepler_kubefake.scheduler import DEFAULT_ALLOCATABLE
from kepler_kubefake.store import Change
from kepler_kubefake.workloads import (
    DESIRED_REPLICAS,
    HASH_LABEL,
    REVISION,
    active,
    is_recreate,
    new_pod,
    new_replicaset,
    pod_ready,
    pod_template_hash,
    replica_failure,
    replicas,
    revision,
    spec_of,
    status_int,
    terminal,
)

log = logging.getLogger("kepler_kubefake.controller")
DirtyKey = tuple[str, str, str]  # (Kind, namespace, name)


class Controller:
    def __init__(
        self,
        api: Api,
        clock: Clock,
        start_delay: float,
        crash_run: float = 0.0,
        allocatable: Mapping[str, str] | None = DEFAULT_ALLOCATABLE,
    ) -> None:
        self.api, self.clock = api, clock
        self.deployments = api.registry.named("Deployment")
        self.replicasets = api.registry.named("ReplicaSet")
        self.pods = api.registry.named("Pod")
        self.events = EventRecorder(api)
        self.kubelet = Kubelet(api, self.events, clock, start_delay, crash_run, allocatable)
        self.garbage = GarbageCollector(api)
        self.errors: list[str] = []
        self._overrides: dict[tuple[str, str], Behaviour] = {}
        self._failures: dict[tuple[str, str], str] = {}
        self._progress_at: dict[str, float] = {}
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._dirty: dict[DirtyKey, None] = {}
        self._wake = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()
        self._task: asyncio.Task[None] | None = None
        api.store.listen(self._on_change)

    # ---- lifecycle

    def start(self) -> None:
        """Like the real controller manager, look at everything that exists first: objects restored from
        a state file were never announced as changes. Ready pods are left alone (their containers kept
        running while the API server was down); any other pod is advanced again, and deletions in progress
        are taken up where they were."""
        for kind in (self.deployments, self.replicasets, self.pods):
            for obj in self.api.store.objects(kind):
                meta = obj["metadata"]
                if kind is not self.pods or not pod_ready(obj) or meta.get("deletionTimestamp"):
                    self.mark((kind.kind, meta.get("namespace", ""), meta["name"]))
                if self.garbage.resume(kind, obj):
                    self.mark(("GC", meta.get("namespace", ""), meta["uid"]))
        self._task = asyncio.create_task(self._run(), name="kubefake-controller")

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def fail_creation(self, namespace: str, deployment: str, message: str | None) -> None:
        """Pod creation for this Deployment's ReplicaSets is refused with `message` (None: allowed again)."""
        if message is None:
            self._failures.pop((namespace, deployment), None)
        else:
            self._failures[(namespace, deployment)] = message
        for rs in self.api.store.objects(self.replicasets, namespace):
            self.mark(("ReplicaSet", namespace, rs["metadata"]["name"]))

    def set_behaviour(self, namespace: str, deployment: str, behaviour: Behaviour | None) -> None:
        if behaviour is None:
            self._overrides.pop((namespace, deployment), None)
        else:
            self._overrides[(namespace, deployment)] = behaviour
        for pod in self.api.store.objects(self.pods, namespace):
            self.mark(("Pod", namespace, pod["metadata"]["name"]))

    # ---- scheduling

    def mark(self, key: DirtyKey) -> None:
        self._dirty[key] = None
        self._wake.set()

    def later(self, delay: float, key: DirtyKey) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self.mark(key)

        handle = loop.call_later(max(0.0, delay), fire)
        self._timers.add(handle)

    def _on_change(self, change: Change) -> None:
        meta = change.obj["metadata"]
        namespace = meta.get("namespace", "")
        kind = change.kind.kind
        if kind in ("Deployment", "ReplicaSet", "Pod") and change.type != "DELETED":
            self.mark((kind, namespace, meta["name"]))
        if kind == "Pod" and change.type == "DELETED":
            self._pod_gone(change.obj)
        if kind in ("ConfigMap", "Secret") and change.type != "DELETED":
            for pod in self.kubelet.waiting_for_config(namespace):
                self.mark(("Pod", namespace, pod))
        for uid, wait in self.garbage.noticed(change):
            self.later(self.clock.real_seconds(GC_DELAY if wait else 0), ("GC", namespace, uid))
        if kind in ("ReplicaSet", "Pod"):
            for ref in meta.get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") in ("Deployment", "ReplicaSet"):
                    self.mark((ref["kind"], namespace, ref["name"]))

    def _pod_gone(self, pod: Obj) -> None:
        """Its room on the node is free for unscheduled pods, and a Recreate rollout may go on."""
        self.kubelet.forget(pod["metadata"]["uid"])
        self._retry_unscheduled()
        if deployment := self._deployment_of(pod):
            self.mark(("Deployment", pod["metadata"].get("namespace", ""), deployment))

    async def _run(self) -> None:
        reconcilers: dict[str, Callable[[str, str], None]] = {
            "Deployment": self._sync_deployment,
            "ReplicaSet": self._sync_replicaset,
            "Pod": self._sync_pod,
            "GC": lambda _namespace, uid: self.garbage.collect(uid),
        }
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                key = next(iter(self._dirty))
                del self._dirty[key]
                self._reconcile(reconcilers[key[0]], key)
                await asyncio.sleep(
                    0
                )  # let API requests in between: a busy controller must not stall clients

    def _reconcile(self, reconcile: Callable[[str, str], None], key: DirtyKey) -> None:
        """One object; a bug in the fake is logged and kept for tests to see, never fatal to the loop."""
        try:
            reconcile(key[1], key[2])
        except Exception as exc:
            log.exception("kubefake controller failed on %s", key)
            self.errors.append(f"{key}: {exc!r}")

    # ---- deployments

    def _owned(self, owner: Obj, kind: ResourceKind) -> list[Obj]:
        return [obj for k, obj in self.api.store.dependents(owner["metadata"]["uid"]) if k == kind]

    def _sync_deployment(self, namespace: str, name: str) -> None:
        d = self.api.store.get(self.deployments, namespace, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        template_hash = self._template_hash(d)
        owned = self._owned(d, self.replicasets)
        new_rs = next(
            (rs for rs in owned if rs["metadata"].get("labels", {}).get(HASH_LABEL) == template_hash), None
        )
        old_rss = [rs for rs in owned if rs is not new_rs]
        top = max((revision(rs) for rs in old_rss), default=0)
        created = new_rs is None and not spec_of(d).get("paused")
        if created:
            new_rs = self._create_replicaset(d, new_replicaset(d, template_hash, top + 1), old_rss)
        elif new_rs is not None and revision(new_rs) <= top:
            new_rs = self._annotate(self.replicasets, new_rs, {REVISION: str(top + 1)})
        if new_rs is None:  # paused: no new ReplicaSet for a changed template (sync.go, sync)
            self._update_status(d, {"metadata": {"name": "", "uid": ""}}, old_rss, False)
            return
        d = self._annotate_deployment(d, str(revision(new_rs)))
        if spec_of(d).get("paused"):
            if not any(replicas(rs) for rs in old_rss):
                new_rs = self._scale_rs(d, new_rs, int(spec_of(d).get("replicas", 1)))
        elif is_recreate(d):
            new_rs = self._recreate(d, new_rs, old_rss)
        else:
            new_rs = self._roll(d, new_rs, old_rss)
        self._clean_history(d, old_rss)
        self._update_status(d, new_rs, old_rss, created)

    def _create_replicaset(self, d: Obj, rs: Obj, old_rss: list[Obj]) -> Obj:
        """Created at its first wave's size already (sync.go, getNewReplicaSet); Recreate starts at 0."""
        count = 0 if is_recreate(d) else rolling.new_replicas(d, rs, [rs, *old_rss])
        rs["spec"]["replicas"] = count
        created = self.api.save(self.replicasets, rs)
        if count:
            message = f"Scaled up replica set {rs['metadata']['name']} from 0 to {count}"
            self.events.record(d, "ScalingReplicaSet", message, component="deployment-controller")
        return created

    def _template_hash(self, d: Obj) -> str:
        """The pod-template-hash, memoised per generation: the template only changes with the generation."""
        collisions = (d.get("status") or {}).get("collisionCount", 0)
        key = (d["metadata"]["uid"], d["metadata"].get("generation", 1), collisions)
        if key not in self._hashes:
            if len(self._hashes) > 10_000:
                self._hashes.clear()
            self._hashes[key] = pod_template_hash(spec_of(d).get("template") or {}, collisions)
        return self._hashes[key]

    def _annotate(self, kind: ResourceKind, obj: Obj, annotations: dict[str, str]) -> Obj:
        current = obj["metadata"].get("annotations") or {}
        if all(current.get(k) == v for k, v in annotations.items()):
            return obj
        updated = {**obj, "metadata": {**obj["metadata"], "annotations": {**current, **annotations}}}
        return self.api.save(kind, updated)

    def _annotate_deployment(self, d: Obj, rev: str) -> Obj:
        """The revision annotation goes through UpdateStatus, so it does not bump the generation."""
        current = d["metadata"].get("annotations") or {}
        if current.get(REVISION) == rev:
            return d
        return self.api.save_status(self.deployments, d, d.get("status") or {}, {**current, REVISION: rev})

    def _scale_rs(self, d: Obj, rs: Obj, count: int) -> Obj:
        current = replicas(rs)
        if current == count:
            return rs
        annotations = {
            **(rs["metadata"].get("annotations") or {}),
            DESIRED_REPLICAS: str(spec_of(d).get("replicas", 1)),
        }
        updated = {
            **rs,
            "metadata": {**rs["metadata"], "annotations": annotations},
            "spec": {**spec_of(rs), "replicas": count},
        }
        direction = "up" if count > current else "down"
        saved = self.api.save(self.replicasets, updated)
        message = f"Scaled {direction} replica set {rs['metadata']['name']} from {current} to {count}"
        self.events.record(d, "ScalingReplicaSet", message, component="deployment-controller")
        return saved

    def _roll(self, d: Obj, new_rs: Obj, old_rss: list[Obj]) -> Obj:
        """One sync of a RollingUpdate (rolling.go): scale the new ReplicaSet up within maxSurge, or else
        the old ones down within maxUnavailable; the next sync takes the next step."""
        target = rolling.new_replicas(d, new_rs, [new_rs, *old_rss])
        if target != replicas(new_rs):
            return self._scale_rs(d, new_rs, target)
        for rs, count in rolling.scale_down_old(d, new_rs, old_rss):
            self._scale_rs(d, rs, count)
        return new_rs

    def _recreate(self, d: Obj, new_rs: Obj, old_rss: list[Obj]) -> Obj:
        """recreate.go: old ReplicaSets to zero, and the new one scaled up only once no old pod is left
        (Terminating ones included)."""
        for rs in old_rss:
            self._scale_rs(d, rs, 0)
        if any(not terminal(pod) for rs in old_rss for pod in self._owned(rs, self.pods)):
            return new_rs
        return self._scale_rs(d, new_rs, int(spec_of(d).get("replicas", 1)))

    def _clean_history(self, d: Obj, old_rss: list[Obj]) -> None:
        """Old, empty ReplicaSets beyond `revisionHistoryLimit` are deleted, oldest first."""
        limit = int(spec_of(d).get("revisionHistoryLimit", 10))
        fresh = [
            self.api.store.get(self.replicasets, rs["metadata"]["namespace"], rs["metadata"]["name"])
            for rs in old_rss
        ]
        idle = sorted(
            (rs for rs in fresh if rs and not replicas(rs) and not status_int(rs, "replicas")),
            key=revision,
        )
        for rs in idle[: max(0, len(idle) - limit)]:
            self.api.delete_object(self.replicasets, rs)

    def _update_status(self, d: Obj, new_rs: Obj, old_rss: list[Obj], created: bool) -> None:
        uid = d["metadata"]["uid"]
        all_rs = self._owned(d, self.replicasets)
        new_rs = next((rs for rs in all_rs if rs["metadata"]["uid"] == new_rs["metadata"]["uid"]), new_rs)
        paused = bool(spec_of(d).get("paused"))
        inp = RolloutInput(d, new_rs, all_rs, created, self.clock.timestamp(), self._timed_out(d), paused)
        failure = replica_failure([new_rs, *(rs for rs in all_rs if rs is not new_rs)])
        status, progressed = deployment_status(inp, failure)
        if progressed or paused or uid not in self._progress_at:
            self._progress_at[uid] = self.clock.now()
        self.api.save_status(self.deployments, d, status)
        self._watch_deadline(d, status)

    def _deadline(self, d: Obj) -> float:
        return self.clock.real_seconds(float(spec_of(d).get("progressDeadlineSeconds", 600)))

    def _timed_out(self, d: Obj) -> bool:
        """No progress for progressDeadlineSeconds; a paused rollout never times out."""
        if spec_of(d).get("paused"):
            return False
        since = self._progress_at.get(d["metadata"]["uid"])
        return since is not None and self.clock.now() - since > self._deadline(d)

    def _watch_deadline(self, d: Obj, status: Obj) -> None:
        """While a rollout is in flight, look again just after its deadline would pass."""
        current = get_condition(status, PROGRESSING)
        if (
            has_deadline(d)
            and current
            and current["status"] == "True"
            and current.get("reason") != "NewReplicaSetAvailable"
        ):
            remaining = self._progress_at[d["metadata"]["uid"]] + self._deadline(d) - self.clock.now()
            self.later(remaining + 0.001, ("Deployment", d["metadata"]["namespace"], d["metadata"]["name"]))

    # ---- replicasets

    def _sync_replicaset(self, namespace: str, name: str) -> None:
        """replica_set.go: active pods (not Terminating) counted against spec.replicas; surplus pods are
        deleted gracefully, not-ready and newest first (controller_utils.go, ActivePodsWithRanks)."""
        rs = self.api.store.get(self.replicasets, namespace, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        pods = [p for p in self._owned(rs, self.pods) if active(p)]
        desired = replicas(rs)
        error = ""
        if desired > len(pods):
            error = self._create_pods(rs, desired - len(pods))
        if len(pods) > desired:
            ranked = sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)
            ranked.sort(key=lambda p: (bool(spec_of(p).get("nodeName")), pod_ready(p)))
            for pod in ranked[: len(pods) - desired]:
                self.api.delete_object(self.pods, pod)
                self.events.record(
                    rs,
                    "SuccessfulDelete",
                    f"Deleted pod: {pod['metadata']['name']}",
                    component="replicaset-controller",
                )
        self._replicaset_status(rs, [p for p in self._owned(rs, self.pods) if active(p)], error)

    def _create_pods(self, rs: Obj, count: int) -> str:
        """Create the missing pods, or fail as an admission plugin (quota, Pod Security) would refuse them."""
        deployment = next(
            (r["name"] for r in rs["metadata"].get("ownerReferences") or [] if r.get("kind") == "Deployment"),
            "",
        )
        refused = self._failures.get((rs["metadata"]["namespace"], deployment))
        if refused is not None:
            error = f'pods "{rs["metadata"]["name"]}-" is forbidden: {refused}'
            self.events.record(
                rs,
                "FailedCreate",
                f"Error creating: {error}",
                warning=True,
                component="replicaset-controller",
            )
            return error
        for _ in range(count):
            pod = self.api.save(self.pods, new_pod(rs))
            self.events.record(
                rs,
                "SuccessfulCreate",
                f"Created pod: {pod['metadata']['name']}",
                component="replicaset-controller",
            )
        return ""

    def _replicaset_status(self, rs: Obj, pods: list[Obj], error: str) -> None:
        min_ready = self.clock.real_seconds(float(spec_of(rs).get("minReadySeconds", 0)))
        ready = [p for p in pods if pod_ready(p)]
        available = 0
        for pod in ready:
            since = self.kubelet.ready_since(pod)
            waited = self.clock.now() - since if since is not None else min_ready
            if waited >= min_ready:
                available += 1
            else:
                self.later(
                    min_ready - waited + 0.001,
                    ("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"]),
                )
        status: Obj = {"replicas": len(pods)}
        extra = {
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": len(ready),
            "availableReplicas": available,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status |= {k: v for k, v in extra.items() if v}
        conditions = self._failure_conditions(rs, error)
        if conditions:
            status["conditions"] = conditions
        self.api.save_status(self.replicasets, rs, status)

    def _failure_conditions(self, rs: Obj, error: str) -> list[Obj]:
        """`ReplicaFailure=True/FailedCreate` while creating pods fails; cleared once it works again."""
        previous = (rs.get("status") or {}).get("conditions") or []
        if not error:
            return [c for c in previous if c.get("type") != "ReplicaFailure"]
        current = next((c for c in previous if c.get("type") == "ReplicaFailure"), None)
        if current and current.get("message") == error:
            return list(previous)
        failure = {
            "type": "ReplicaFailure",
            "status": "True",
            "lastTransitionTime": self.clock.timestamp(),
            "reason": "FailedCreate",
            "message": error,
        }
        return [c for c in previous if c.get("type") != "ReplicaFailure"] + [failure]

    # ---- pods

    def _sync_pod(self, namespace: str, name: str) -> None:
        pod = self.api.store.get(self.pods, namespace, name)
        if pod is None:
            return
        wait = self.kubelet.sync(pod, self._behaviour(pod))
        if wait is not None:
            self.later(wait, ("Pod", namespace, name))

    def _retry_unscheduled(self) -> None:
        """The scheduler retries pods it could not place when resources are freed."""
        for pod in self.api.store.objects(self.pods):
            if not spec_of(pod).get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                self.mark(("Pod", pod["metadata"].get("namespace", ""), pod["metadata"]["name"]))

    def _behaviour(self, pod: Obj) -> Behaviour:
        namespace = pod["metadata"].get("namespace", "")
        deployment = self._deployment_of(pod)
        if deployment and (override := self._overrides.get((namespace, deployment))):
            return override
        return behaviour_from_images([c.get("image", "") for c in spec_of(pod).get("containers") or []])

    def _deployment_of(self, pod: Obj) -> str | None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "ReplicaSet":
                rs = self.api.store.get(self.replicasets, pod["metadata"].get("namespace"), ref["name"])
                for rs_ref in (rs or {"metadata": {}})["metadata"].get("ownerReferences") or []:
                    if rs_ref.get("kind") == "Deployment":
                        return str(rs_ref["name"])
        return None
