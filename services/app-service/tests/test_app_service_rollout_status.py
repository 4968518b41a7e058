"""Reading a Deployment's status as `kubectl rollout status` does, and the deadline a rollback inherits."""

from typing import Any

from kepler_app_service.releases.rollout import PodState, rollout_status, timed_out, unsteady

TIMED_OUT = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "web-7d9" has timed out progressing.',
    "lastUpdateTime": "2026-11-27T10:00:05Z",
    "lastTransitionTime": "2026-11-27T10:00:05Z",
}


def deployment(generation: int, observed: int, progressing: dict[str, Any], **counts: int) -> dict[str, Any]:
    status = {"observedGeneration": observed, "conditions": [progressing]} | counts
    return {"metadata": {"name": "web", "generation": generation}, "spec": {"replicas": 2}, "status": status}


class TestRolloutStatus:
    def test_a_timed_out_rollout_failed(self) -> None:
        rollout = rollout_status(deployment(2, 2, TIMED_OUT, replicas=3, updatedReplicas=1))
        assert (rollout.failed, rollout.reason) == (True, "ProgressDeadlineExceeded")

    def test_the_timeout_a_rollback_inherits_is_not_its_failure(self) -> None:
        """Undo to a ReplicaSet whose pods are ready: the controller first reports the old condition for
        the new generation, then progress."""
        applied = deployment(3, 2, TIMED_OUT)
        stale = timed_out(applied)
        assert stale is not None
        observed = deployment(3, 3, TIMED_OUT, replicas=3, updatedReplicas=2, readyReplicas=2)
        assert not rollout_status(observed, stale).failed
        assert rollout_status(observed).failed  # what kubectl would say
        done = {**TIMED_OUT, "status": "True", "reason": "NewReplicaSetAvailable"}
        finished = deployment(3, 3, done, replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
        assert rollout_status(finished, stale).done

    def test_a_new_timeout_after_a_rollback_still_fails_it(self) -> None:
        stale = timed_out(deployment(3, 2, TIMED_OUT))
        again = {
            **TIMED_OUT,
            "lastUpdateTime": "2026-11-27T10:05:00Z",
            "lastTransitionTime": "2026-11-27T10:05:00Z",
        }
        assert rollout_status(deployment(3, 3, again, replicas=3, updatedReplicas=1), stale).failed


def pod(name: str, release: str, restarts: int = 0, waiting: str | None = None, **status: Any) -> PodState:
    containers = [{"restartCount": restarts, "state": {"waiting": {"reason": waiting}} if waiting else {}}]
    return PodState.of(
        {
            "metadata": {"name": name, "annotations": {"kepler.dev/release": release}},
            "status": {"phase": "Running", "containerStatuses": containers, **status},
        }
    )


class TestStabilisation:
    def test_a_restart_of_a_new_pod_is_unsteady(self) -> None:
        """A container without a readinessProbe is Ready while it runs (prober_manager.go): a pod that
        exits after a few seconds was counted available, and restarts afterwards."""
        assert unsteady([pod("web-1", "2", restarts=1)], 2, {}) is not None

    def test_restarts_from_before_the_deployment_do_not_count(self) -> None:
        """A rollback to the pods already running keeps their old restart counts."""
        assert unsteady([pod("web-1", "2", restarts=4)], 2, {"web-1": 4}) is None
        assert unsteady([pod("web-1", "2", restarts=5)], 2, {"web-1": 4}) is not None

    def test_pods_of_other_releases_do_not_count(self) -> None:
        assert unsteady([pod("web-1", "1", restarts=3, waiting="CrashLoopBackOff")], 2, {}) is None

    def test_a_container_that_cannot_run_is_unsteady(self) -> None:
        for reason in ("CreateContainerConfigError", "ErrImagePull", "RunContainerError"):
            assert unsteady([pod("web-1", "2", waiting=reason)], 2, {}) is not None

    def test_an_unschedulable_pod_says_so(self) -> None:
        """The scheduler's `PodScheduled=False/Unschedulable`, and no container statuses (pkg/scheduler)."""
        scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        state = PodState.of(
            {"metadata": {"name": "web-1"}, "status": {"phase": "Pending", "conditions": [scheduled]}}
        )
        assert state.waiting_reason == "Unschedulable"
