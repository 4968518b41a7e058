"""The job that makes a deployment happen: apply, follow the rollout, finish, roll back if it failed.

Jobs may run twice and workers may die: a run first *claims* the deployment (compare-and-set on `attempt`),
applies with server-side apply (a re-apply is a no-op), and heartbeats while it follows the watch. A run
that lost its claim stops; a deployment whose heartbeat goes quiet is picked up again by the sweeper.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.releases import events, manifests, repository, service
from kepler_app_service.releases.lifecycle import Audit, move
from kepler_app_service.releases.rollout import (
    FAILED_CREATE,
    PodState,
    Rollout,
    crash_looping,
    ended,
    replica_failure,
    rollout_status,
    timed_out,
    unsteady,
)
from kepler_app_service.releases.states import AWAITING_APPROVAL, DEPLOYMENTS, TERMINAL
from kepler_app_service.settings import AppServiceSettings
from kepler_db import models
from kepler_kit.identity import Principal
from kepler_kit.jobs import WorkerContext, session_scope
from kepler_kit.logging import get_logger
from kepler_kube.base import (
    ClusterUnavailable,
    Kube,
    KubeError,
    KubeForbidden,
    KubeNotFound,
    WatchExpired,
)
from kepler_kube.registry import ClusterRegistry

log = get_logger(__name__)
SYSTEM = Principal(user_id=None, name="kepler")
HEARTBEAT_SECONDS = 4.0  # well below AppServiceSettings.deploy_stale_seconds
REPLICA_EVENTS_EVERY = 0.25


NAMESPACE_TERMINATING = "NamespaceTerminating"
_FOLLOWING = (models.DeploymentStatus.applying, models.DeploymentStatus.progressing)


class Rejected(Exception):
    """The API server refused one of the release's objects: nothing later in the list was applied."""

    def __init__(self, obj: manifests.Obj, error: KubeError) -> None:
        super().__init__(error.detail)
        self.kind, self.name, self.error = obj["kind"], obj["metadata"]["name"], error

    @property
    def reason(self) -> str:
        if isinstance(self.error, KubeForbidden) and self.error.terminating:
            return NAMESPACE_TERMINATING
        return self.error.reason

    @property
    def message(self) -> str:
        return f"the cluster rejected {self.kind} '{self.name}': {self.error.message}"

    def event(self) -> dict[str, Any]:
        causes = [{"field": c.field, "reason": c.reason, "message": c.message} for c in self.error.causes]
        return {
            "kind": self.kind,
            "name": self.name,
            "reason": self.reason,
            "message": self.message,
            "causes": causes,
        }


@dataclass
class Target:
    deployment_id: uuid.UUID
    app_id: uuid.UUID
    app: str
    namespace: str
    release: int
    objects: list[manifests.Obj]
    selector: str
    kube: Kube
    deadline: float
    fresh: bool  # no deployment took this release to the cluster before: none of its pods run yet


@dataclass
class Progress:
    last_counts: dict[str, int] = field(default_factory=dict)
    pods: dict[str, PodState] = field(default_factory=dict)
    pods_listed: float = 0.0  # monotonic: pods are listed at most a few times a second
    beat: float = 0.0
    stale_timeout: manifests.Obj | None = None  # see `rollout.timed_out`
    restarts_before: dict[str, int] | None = None  # each pod's restarts when the deployment was first seen


class Runner:
    def __init__(self, ctx: WorkerContext, registry: ClusterRegistry, settings: AppServiceSettings) -> None:
        self.ctx, self.registry, self.settings = ctx, registry, settings

    async def run(self, deployment_id: uuid.UUID, attempt: int) -> str:
        target = await self._claim(deployment_id, attempt)
        if target is None:
            return "skipped"
        try:
            applied = await self._apply(target)
        except ClusterUnavailable as exc:
            self.registry.failed(exc)
            await self._back_to_pending(target, exc)
            return "cluster-unavailable"
        except Rejected as rejected:
            self.registry.reached(target.kube.name)
            await self._record(target, "rejected", rejected.event())
            await self._finish(target, ended(rejected.reason, rejected.message, {}))
            return "failed"
        self.registry.reached(target.kube.name)
        outcome = await self._follow(target, applied)
        if outcome is None:
            return "superseded"
        await self._finish(target, outcome)
        return "succeeded" if outcome.done else "failed"

    async def _claim(self, deployment_id: uuid.UUID, attempt: int) -> Target | None:
        async with session_scope(self.ctx) as session:
            found = await repository.deployment_context(session, deployment_id)
            if found is None or found[0].status in TERMINAL or found[0].reason == AWAITING_APPROVAL:
                return None
            deployment, app, namespace = found
            # Lock order everywhere: the app row first, then its deployments (the API does the same).
            locked = await repository.locked_app(session, app.id)
            # None: the app was deleted meanwhile (its deployments with it), or another run claimed it.
            if locked is None or not await repository.claim(session, deployment_id, attempt):
                return None
            app = locked
            await session.refresh(deployment)
            if await self._superseded(session, deployment):
                return None
            release = await repository.release_by_id(session, deployment.release_id)
            kube = await self.registry.for_namespace(session, namespace, self.settings.default_cluster)
            if deployment.status is models.DeploymentStatus.pending:
                await move(session, deployment, models.DeploymentStatus.applying)
            spec_deadline = int(release.spec.get("progress_deadline_seconds", 600))
            return Target(
                deployment_id=deployment.id,
                app_id=app.id,
                app=app.name,
                namespace=namespace,
                release=release.number,
                objects=service.objects_for(app, namespace, release),
                selector=manifests.label_selector(app.selector or manifests.selector(app.name)),
                kube=kube,
                deadline=time.monotonic() + 2 * spec_deadline + 60,
                fresh=not await repository.deployed_before(session, release.id, deployment.id),
            )

    async def _superseded(self, session: AsyncSession, deployment: models.Deployment) -> bool:
        """Older active deployments of the app give way to this one; this one gives way to a newer one."""
        for other in await repository.active_deployments(session, deployment.app_id):
            if other.id == deployment.id:
                continue
            older, newer = (
                (other, deployment) if other.created_at <= deployment.created_at else (deployment, other)
            )
            await move(
                session, older, models.DeploymentStatus.superseded, "Superseded", f"superseded by {newer.id}"
            )
        return deployment.status is models.DeploymentStatus.superseded

    async def _apply(self, target: Target) -> manifests.Obj:
        """Applies the namespace (once per process) and the release's objects in order; raises Rejected
        for the first one the API server refuses. A 404 means the namespace went away since this process
        created it (deleted outside Kepler): it is created again, once."""
        try:
            return await self._apply_all(target)
        except Rejected as rejected:
            if not isinstance(rejected.error, KubeNotFound):
                raise
            self.registry.namespaces.discard((target.kube.name, target.namespace))
            return await self._apply_all(target)

    async def _apply_all(self, target: Target) -> manifests.Obj:
        if (target.kube.name, target.namespace) not in self.registry.namespaces:
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target.namespace}}
            await self._apply_one(target.kube, namespace)
            self.registry.namespaces.add((target.kube.name, target.namespace))
        applied: manifests.Obj = {}
        for obj in target.objects:
            applied = await self._apply_one(target.kube, obj)
        return applied  # the Deployment: applied last

    async def _apply_one(self, kube: Kube, obj: manifests.Obj) -> manifests.Obj:
        try:
            return await kube.apply(obj)
        except KubeError as exc:
            raise Rejected(obj, exc) from exc

    async def _back_to_pending(self, target: Target, error: ClusterUnavailable) -> None:
        """The cluster is down: the deployment waits (the sweeper retries) until it is back or cancelled."""
        async with session_scope(self.ctx) as session:
            deployment = await session.get(models.Deployment, target.deployment_id, with_for_update=True)
            if deployment is None or deployment.status in TERMINAL:
                return
            deployment.heartbeat_at = datetime.now(UTC)
            await move(
                session, deployment, models.DeploymentStatus.pending, "ClusterUnavailable", error.detail
            )

    async def _follow(self, target: Target, applied: manifests.Obj) -> Rollout | None:
        version = applied["metadata"]["resourceVersion"]
        async with session_scope(self.ctx) as session:
            deployment = await session.get(models.Deployment, target.deployment_id, with_for_update=True)
            if deployment is None or not DEPLOYMENTS.allows(
                deployment.status, models.DeploymentStatus.progressing
            ):
                return None
            deployment.resource_version = version
            await move(session, deployment, models.DeploymentStatus.progressing)
        progress = Progress(stale_timeout=timed_out(applied))
        rollout = rollout_status(applied, progress.stale_timeout)
        # Pods of a release deployed before may have run for months: their old restarts are no news.
        progress.restarts_before = {} if target.fresh else await self._restarts(target)
        first = True
        while time.monotonic() < target.deadline:
            if rollout.done:
                return await self._stabilise(target, progress, rollout, version)
            if (
                rollout.failed
                and rollout.reason == FAILED_CREATE
                and not await self._failing_new(target, rollout)
            ):
                rollout = replace(rollout, failed=False, message="an older ReplicaSet cannot create pods")
            elif rollout.failed:
                await self._pods(target, progress)  # followers see the pods as they were at the end
                return rollout
            if not first:  # pods are looked at after each watch window, not before the first
                crash = await self._crash_check(target, progress)
                if crash is not None:
                    return crash
                if not await self._still_ours(target, progress, rollout, version, force=True):
                    return None
            first = False
            rollout, version = await self._watch_once(target, progress, version, rollout)
        return ended("KeplerDeadline", "the rollout did not finish in time", rollout.counts)

    async def _watch_once(
        self, target: Target, progress: Progress, version: str, rollout: Rollout
    ) -> tuple[Rollout, str]:
        """One watch stream (it ends after the server's timeout, or on a drop): resume from `version`."""
        selector = f"metadata.name={target.app}"
        try:
            async for kind, obj in target.kube.watch("Deployment", target.namespace, version, selector):
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if kind == "DELETED":
                    return ended("Deleted", "the Deployment was deleted", rollout.counts), version
                if kind in ("ADDED", "MODIFIED"):
                    rollout = rollout_status(obj, progress.stale_timeout)
                    if rollout.counts != progress.last_counts:
                        await self._pods(target, progress, throttled=True)
                    await self._still_ours(target, progress, rollout, version)
                    if rollout.done or rollout.failed:
                        break
        except WatchExpired:
            return await self._relist(target, progress, rollout, version)
        except ClusterUnavailable as exc:
            self.registry.failed(exc)
            await asyncio.sleep(2)
        except KubeError as exc:  # e.g. Kepler may no longer watch (RBAC changed): the deadline bounds it
            log.warning("rollout_watch_refused", app=target.app, namespace=target.namespace, error=exc.detail)
            await asyncio.sleep(2)
        return rollout, version

    async def _relist(
        self, target: Target, progress: Progress, rollout: Rollout, version: str
    ) -> tuple[Rollout, str]:
        """After a 410, the watch resumes from a LIST's resourceVersion: the Deployment's own version may be
        older than the server's window (it changes only when the Deployment does), and would expire again."""
        try:
            listed = await target.kube.list(
                "Deployment", target.namespace, field_selector=f"metadata.name={target.app}"
            )
        except (ClusterUnavailable, KubeError) as exc:
            log.warning("rollout_relist_failed", app=target.app, namespace=target.namespace, error=str(exc))
            await asyncio.sleep(2)
            return rollout, version
        items, version = listed["items"], listed["metadata"]["resourceVersion"]
        if not items:
            return ended("Deleted", "the Deployment was deleted", rollout.counts), version
        return rollout_status(items[0], progress.stale_timeout), version

    async def _stabilise(
        self, target: Target, progress: Progress, rollout: Rollout, version: str
    ) -> Rollout | None:
        """The rollout completed: its new pods must now stay up, without a restart, for the stabilisation
        window before the deployment succeeds; a pod that restarts or cannot run fails it. None once
        another deployment superseded this one.

        The pods are looked at halfway and at the end, not at the start (the rollout just counted them
        available): restartCount only grows, so the last look sees any restart of the window, and the
        other fails a crashing release sooner. In between, only heartbeats (one statement each)."""
        window = self.settings.rollout_stable_seconds
        if not await self._still_ours(target, progress, rollout, version, stabilising=window):
            return None
        # Heartbeats well within the staleness after which the sweeper takes a deployment for lost.
        beat = min(HEARTBEAT_SECONDS, self.settings.deploy_stale_seconds / 3)
        until = time.monotonic() + window
        looks = [until - window / 2, until]
        while looks:
            await asyncio.sleep(max(0.0, min(looks[0] - time.monotonic(), beat)))
            if time.monotonic() >= looks[0]:
                looks.pop(0)
                bad = await self._unsteady_pod(target, progress)
                if bad is not None:
                    return ended("Unstable", _unsteady_message(bad), rollout.counts)
            elif not await self._beat(target):
                return None
        return rollout

    async def _beat(self, target: Target) -> bool:
        async with session_scope(self.ctx) as session:
            return await repository.heartbeat(session, target.deployment_id)

    async def _unsteady_pod(self, target: Target, progress: Progress) -> PodState | None:
        pods = await self._pods(target, progress)
        if pods is None:
            return None  # the cluster does not answer: the next look will tell
        if progress.restarts_before is None:  # unknown before the rollout: from now on
            progress.restarts_before = {pod.name: pod.restarts for pod in pods}
        return unsteady(pods, target.release, progress.restarts_before)

    async def _restarts(self, target: Target) -> dict[str, int] | None:
        """Each pod's restarts before the rollout changes anything (a pod that runs unchanged since last
        month keeps last month's restarts); None when the cluster does not answer."""
        try:
            listed = await target.kube.list("Pod", target.namespace, target.selector)
        except (ClusterUnavailable, KubeError):
            return None
        return {pod.name: pod.restarts for pod in map(PodState.of, listed["items"])}

    async def _failing_new(self, target: Target, rollout: Rollout) -> bool:
        """Whether the ReplicaFailure the Deployment reports is its new ReplicaSet's (see
        `rollout.replica_failure`); when the cluster does not tell, the next look will."""
        try:
            listed = await target.kube.list("ReplicaSet", target.namespace, target.selector)
        except (ClusterUnavailable, KubeError):
            return False
        return any(replica_failure(rs, rollout.revision) for rs in listed["items"])

    async def _pods(
        self, target: Target, progress: Progress, throttled: bool = False
    ) -> list[PodState] | None:
        """Lists the app's pods and, when anything about them changed, records a `pods` event with all of
        them (a snapshot a follower can render as is; the stream relays it from Postgres, so any process
        serves it). None when the cluster cannot be reached: the next look will tell."""
        if throttled and time.monotonic() - progress.pods_listed < REPLICA_EVENTS_EVERY:
            return None
        progress.pods_listed = time.monotonic()
        try:
            listed = await target.kube.list("Pod", target.namespace, target.selector)
        except (ClusterUnavailable, KubeError):
            return None
        pods = sorted((PodState.of(p) for p in listed["items"]), key=lambda p: p.name)
        if {p.name: p for p in pods} != progress.pods:
            progress.pods = {p.name: p for p in pods}
            await self._record(target, "pods", {"pods": [_pod(p) for p in pods]})
        return pods

    async def _crash_check(self, target: Target, progress: Progress) -> Rollout | None:
        pods = await self._pods(target, progress)
        if pods is None:
            return None
        crash = crash_looping(pods, target.release, self.settings.crash_loop_restarts)
        if crash is None:
            return None
        if crash.waiting_reason == "CrashLoopBackOff":
            message = f"pod {crash.name} keeps crashing: {crash.restarts} restarts"
            return ended("CrashLoop", message, progress.last_counts)
        message = (
            f"pod {crash.name} cannot run: {crash.waiting_reason}"  # e.g. an image that cannot be pulled
        )
        return ended(crash.waiting_reason or "CannotRun", message, progress.last_counts)

    async def _still_ours(
        self,
        target: Target,
        progress: Progress,
        rollout: Rollout,
        version: str,
        force: bool = False,
        stabilising: float | None = None,
    ) -> bool:
        """Records new replica counts and heartbeats (and, with `stabilising`, that the stabilisation window
        began); False once another deployment superseded this one.

        A rollout sends a burst of watch events; followers get at most a few replica updates a second
        (the final counts always arrive with the final status), which spares a transaction per event.
        """
        quiet_for = time.monotonic() - progress.beat
        changed = rollout.counts != progress.last_counts
        due = REPLICA_EVENTS_EVERY if changed else HEARTBEAT_SECONDS
        if not force and stabilising is None and quiet_for < due:
            return True
        async with session_scope(self.ctx) as session:
            deployment = await session.get(models.Deployment, target.deployment_id, with_for_update=True)
            if deployment is None or deployment.status is not models.DeploymentStatus.progressing:
                return False
            deployment.heartbeat_at, deployment.resource_version = datetime.now(UTC), version
            if rollout.counts != progress.last_counts:
                deployment.replicas = rollout.counts
                events.record(session, deployment, "replicas", {**rollout.counts, "message": rollout.message})
            if stabilising is not None:
                events.record(session, deployment, "stabilising", {"seconds": stabilising})
        progress.last_counts, progress.beat = rollout.counts, time.monotonic()
        return True

    async def _record(self, target: Target, kind: str, data: dict[str, Any]) -> None:
        async with session_scope(self.ctx) as session:
            deployment = await session.get(models.Deployment, target.deployment_id)
            if deployment is not None:
                events.record(session, deployment, kind, data)

    async def _finish(self, target: Target, outcome: Rollout) -> None:
        async with session_scope(self.ctx) as session:
            app = await repository.locked_app(session, target.app_id)
            deployment = await session.get(models.Deployment, target.deployment_id, with_for_update=True)
            # applying: the cluster rejected the objects before the rollout began
            if app is None or deployment is None or deployment.status not in _FOLLOWING:
                return  # superseded or cancelled while we watched: its new owner reports
            deployment.replicas = outcome.counts
            if outcome.done:
                await move(
                    session, deployment, models.DeploymentStatus.succeeded, "RolledOut", outcome.message
                )
                app.current_release = target.release
                return
            await self._failed(session, app, deployment, target, outcome)

    async def _failed(
        self,
        session: AsyncSession,
        app: models.App,
        deployment: models.Deployment,
        target: Target,
        outcome: Rollout,
    ) -> None:
        reason = outcome.reason or "Failed"
        # An automatic rollback that fails is not rolled back in turn: that would walk back through history.
        # Nor is anything rolled back into a namespace being deleted: the rollback would be refused too.
        rolls_back = app.auto_rollback and not deployment.automatic and reason != NAMESPACE_TERMINATING
        good = (
            await repository.last_good_release(session, app.id, deployment.release_id) if rolls_back else None
        )
        if good is None:
            await move(session, deployment, models.DeploymentStatus.failed, reason, outcome.message)
            return
        message = f"{outcome.message}; rolled back to release {good.number}"
        detail = {"failed_release": target.release, "to_release": good.number, "reason": reason}
        audit = Audit(
            who=SYSTEM,
            action="app.auto_rollback",
            app=app.name,
            namespace=target.namespace,
            detail=detail,
        )
        await move(
            session,
            deployment,
            models.DeploymentStatus.rolled_back,
            reason,
            message,
            audit=audit,
            to_release=good.number,
        )
        rollback = await service.start_deployment(session, app, good, None, automatic=True)
        events.record(
            session, deployment, "auto_rollback", {"to_release": good.number, "deployment": str(rollback.id)}
        )
        log.warning(
            "auto_rollback", app=app.name, namespace=target.namespace, to_release=good.number, reason=reason
        )


def _unsteady_message(pod: PodState) -> str:
    if pod.waiting_reason and pod.waiting_reason != "CrashLoopBackOff":
        return f"pod {pod.name} cannot run after the rollout: {pod.waiting_reason}"
    return f"pod {pod.name} restarted after the rollout ({pod.restarts} restarts in all)"


def _pod(pod: PodState) -> dict[str, Any]:
    return {
        "name": pod.name,
        "phase": pod.phase,
        "ready": pod.ready,
        "restarts": pod.restarts,
        "reason": pod.waiting_reason,
        "release": int(pod.release) if pod.release and pod.release.isdigit() else None,
    }
