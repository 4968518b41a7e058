"""The fake kubelet and scheduler: readiness, crashes, image pulls, config errors and unschedulable pods with
a real node's timing (scaled by time_scale)."""

from collections.abc import Callable
from typing import Any

import pytest

from kepler_kubefake import Behaviour, KubeFake, PodBehaviour
from kepler_kubefake.restarts import crash_timeline, pull_timeline
from kepler_kubefake.store import Change

Manifest = dict[str, Any]
MakeDeployment = Callable[..., Manifest]
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}


def pods(fake: KubeFake) -> list[Manifest]:
    return fake.objects("Pod", "team-a")


def first_status(fake: KubeFake) -> Manifest:
    found = pods(fake)
    return dict(found[0].get("status") or {}) if found else {}


def container(fake: KubeFake) -> Manifest:
    return dict((first_status(fake).get("containerStatuses") or [{}])[0])


def condition(fake: KubeFake, type_: str) -> Manifest:
    return next((c for c in first_status(fake).get("conditions") or [] if c["type"] == type_), {})


def ready(fake: KubeFake) -> bool:
    return condition(fake, "Ready").get("status") == "True"


def pod_history(fake: KubeFake) -> list[tuple[bool, int, str, Manifest]]:
    """Every container status the pod is written with, in order: (ready, restarts, state, status)."""
    seen: list[tuple[bool, int, str, Manifest]] = []
    pods_kind = fake.registry.named("Pod")

    def record(change: Change) -> None:
        statuses = (change.obj.get("status") or {}).get("containerStatuses")
        if change.kind is pods_kind and statuses:
            c = statuses[0]
            state = next(iter(c["state"]))
            reason = c["state"][state].get("reason", "") if state == "waiting" else ""
            seen.append((c["ready"], c["restartCount"], f"{state}:{reason}" if reason else state, c))

    fake.store.listen(record)
    return seen


def with_container(manifest: Manifest, **fields: Any) -> Manifest:
    manifest["spec"]["template"]["spec"]["containers"][0].update(fields)
    return manifest


class TestReadiness:
    async def test_without_a_readiness_probe_a_container_is_ready_as_soon_as_it_runs(
        self, make_deployment: MakeDeployment
    ) -> None:
        """pkg/kubelet/prober/prober_manager.go (UpdatePodStatus): no readiness worker means Ready once the
        container is running. Before that, it is starting for `ready_delay` (ContainerCreating)."""
        async with KubeFake.start(ready_delay=0.2, time_scale=0.005) as fake:
            fake.create(NAMESPACE)
            fake.create(make_deployment(replicas=1))
            await fake.wait_for(lambda: bool(container(fake)))
            creating = container(fake)
            await fake.wait_for(lambda: "running" in container(fake).get("state", {}))
            running = container(fake)

        assert creating["state"]["waiting"]["reason"] == "ContainerCreating"
        assert running["ready"] is True
        assert running["state"]["running"]["startedAt"]

    async def test_the_default_start_takes_a_couple_of_kubernetes_seconds(
        self, make_deployment: MakeDeployment
    ) -> None:
        """Pulling and starting a container takes time on a real node; by default 2 Kubernetes seconds."""
        async with KubeFake.start(time_scale=0.05) as fake:
            fake.create(NAMESPACE)
            fake.create(make_deployment(replicas=1))
            await fake.wait_for(lambda: bool(container(fake)))
            creating = container(fake)
            await fake.wait_for(lambda: ready(fake))

        assert creating["state"]["waiting"]["reason"] == "ContainerCreating"

    async def test_a_readiness_probe_makes_it_ready_after_its_initial_delay(
        self, fake: KubeFake, make_deployment: MakeDeployment
    ) -> None:
        """pkg/kubelet/prober/worker.go: the probe result starts as Failure and the first probe runs at a
        tick (every periodSeconds) once initialDelaySeconds have passed since the container started."""
        probe = {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 20, "periodSeconds": 5}
        fake.create(NAMESPACE)
        fake.create(with_container(make_deployment(replicas=1), readinessProbe=probe))
        await fake.wait_for(lambda: "running" in container(fake).get("state", {}))
        unready = container(fake)
        await fake.wait_for(lambda: ready(fake))

        assert unready["ready"] is False
        assert container(fake)["ready"] is True

    async def test_never_ready_runs_without_becoming_ready(
        self, fake: KubeFake, make_deployment: MakeDeployment
    ) -> None:
        """A readiness probe that always fails: Running, Ready=False and an Unhealthy event
        (pkg/kubelet/prober/prober.go)."""
        fake.create(NAMESPACE)
        fake.create(make_deployment(image="registry.local/app:neverready", replicas=1))
        await fake.wait_for(lambda: "running" in container(fake).get("state", {}))

        assert condition(fake, "Ready")["status"] == "False"
        assert "Unhealthy" in {e["reason"] for e in fake.objects("Event", "team-a")}


class TestCrashes:
    def test_crash_loop_back_off_doubles_from_10s_to_300s(self) -> None:
        """pkg/kubelet/kuberuntime/kuberuntime_manager.go (doBackOff) with client-go's flowcontrol back-off,
        10 s initial, 300 s cap (pkg/kubelet/kubelet.go MaxContainerBackOff): the first exit restarts at
        once, then 10, 20, 40 … 300 s of CrashLoopBackOff between runs."""
        waits: list[float] = []
        now = 0.0
        moment = crash_timeline(5.0, now)
        while len(waits) < 8:
            assert moment.next_change is not None
            now = moment.next_change
            moment = crash_timeline(5.0, now)
            if not moment.running:
                waits.append(moment.backoff)
        assert waits == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
        assert (crash_timeline(5.0, 4.0).running, crash_timeline(5.0, 4.0).restarts) == (True, 0)
        assert (crash_timeline(5.0, 5.0).running, crash_timeline(5.0, 5.0).restarts) == (True, 1)  # at once
        assert (crash_timeline(5.0, 11.0).running, crash_timeline(5.0, 11.0).restarts) == (False, 1)

    def test_a_container_that_fails_at_startup_is_never_seen_running(self) -> None:
        """pkg/kubelet/pleg/generic.go relists every second: a run shorter than that is only seen exited."""
        assert not crash_timeline(0.0, 0.0).running
        assert crash_timeline(0.0, 5.0).restarts == 1
        assert crash_timeline(0.0, 15.0).restarts == 2

    def test_image_pulls_back_off_like_crashes(self) -> None:
        """pkg/kubelet/images/image_manager.go: each failed pull is ErrImagePull, then ImagePullBackOff until
        the next attempt, 10, 20, 40 … s later."""
        assert pull_timeline(0.5)[0] is True
        assert pull_timeline(5.0)[:2] == (False, 10.0)
        assert pull_timeline(10.5)[0] is True
        assert pull_timeline(15.0)[:2] == (False, 20.0)

    async def test_crash_after_n_seconds_is_ready_first_then_backs_off(
        self, fake: KubeFake, make_deployment: MakeDeployment
    ) -> None:
        """A process that runs 5 s and exits 1 (`…crashafter5…`): Ready while it runs (no probe), then
        restarted at once with lastState.terminated recorded, then CrashLoopBackOff with restarts climbing
        (pkg/kubelet/kuberuntime/kuberuntime_manager.go)."""
        fake.create(NAMESPACE)
        history = pod_history(fake)
        fake.create(make_deployment(image="registry.local/app:crashafter5", replicas=1))
        await fake.wait_for(lambda: int(container(fake).get("restartCount", 0)) >= 3, within=10)

        steps = [
            (ready_, restarts, state)
            for ready_, restarts, state, _ in history
            if state != "waiting:ContainerCreating"
        ]
        backing_off = next(
            full for _, restarts, state, full in history if state == "waiting:CrashLoopBackOff"
        )
        waiting = backing_off["state"]["waiting"]
        terminated = backing_off["lastState"]["terminated"]
        assert list(dict.fromkeys(steps))[:4] == [
            (True, 0, "running"),
            (True, 1, "running"),  # the first exit is restarted at once
            (False, 1, "waiting:CrashLoopBackOff"),
            (True, 2, "running"),
        ]
        assert waiting["message"].startswith("back-off 10s restarting failed container=web pod=web-")
        assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
        assert first_status(fake)["phase"] == "Running"
        assert "BackOff" in {e["reason"] for e in fake.objects("Event", "team-a")}

    async def test_crash_after_can_be_set_with_an_exit_code(
        self, fake: KubeFake, make_deployment: MakeDeployment
    ) -> None:
        """The same behaviour through the fake: `set_pod_behaviour(..., "crashafter:2:exit=3")`."""
        fake.set_pod_behaviour("team-a", "web", "crashafter:2:exit=3")
        fake.create(NAMESPACE)
        fake.create(make_deployment(replicas=1))
        await fake.wait_for(lambda: container(fake).get("restartCount") == 1)

        assert container(fake)["lastState"]["terminated"]["exitCode"] == 3
        assert Behaviour.parse("crashafter:2:exit=3") == Behaviour.crash_after(2, exit_code=3)
        assert Behaviour.parse(PodBehaviour.CRASHLOOP).kind is PodBehaviour.CRASHLOOP

    async def test_a_crash_loop_is_never_ready(self, fake: KubeFake, make_deployment: MakeDeployment) -> None:
        """`…crashloop…` fails at startup: CrashLoopBackOff from the first restart, never Ready."""
        fake.create(NAMESPACE)
        history = pod_history(fake)
        fake.create(make_deployment(image="registry.local/app:crashloop", replicas=1))
        await fake.wait_for(lambda: int(container(fake).get("restartCount", 0)) >= 2)

        assert not any(ready_ for ready_, *_ in history)
        assert "running" not in {state for _, _, state, _ in history}
        assert container(fake)["state"]["waiting"]["reason"] == "CrashLoopBackOff"


class TestConfigErrors:
    async def test_a_missing_config_map_is_create_container_config_error_until_it_appears(
        self, fake: KubeFake, make_deployment: MakeDeployment
    ) -> None:
        """pkg/kubelet/kubelet_pods.go (makeEnvironmentVariables): an env source that does not exist stops
        the container from being created; it starts once the object is there."""
        fake.create(NAMESPACE)
        env = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}]
        fake.create(
            with_container(make_deployment(replicas=1), env=env, envFrom=[{"secretRef": {"name": "creds"}}])
        )
        await fake.wait_for(lambda: "CreateContainerConfigError" in str(container(fake)))
        first = container(fake)["state"]["waiting"]["message"]

        fake.create(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "team-a"}}
        )
        await fake.wait_for(lambda: 'configmap "settings"' in str(container(fake)))
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "team-a"},
        }
        fake.create(cm)
        await fake.wait_for(lambda: "couldn't find key mode" in str(container(fake)))
        missing_key = container(fake)["state"]["waiting"]["message"]
        fake.api.save(fake.registry.named("ConfigMap"), {**cm, "data": {"mode": "fast"}})
        await fake.wait_for(lambda: ready(fake))

        assert first == 'secret "creds" not found'
        assert missing_key == "couldn't find key mode in ConfigMap team-a/settings"
        assert 'Error: secret "creds" not found' in {e["message"] for e in fake.objects("Event", "team-a")}

    async def test_an_optional_source_may_be_missing(
        self, fake: KubeFake, make_deployment: MakeDeployment
    ) -> None:
        """`optional: true` sources are skipped when absent (same file)."""
        fake.create(NAMESPACE)
        env_from = [{"configMapRef": {"name": "absent", "optional": True}}]
        fake.create(with_container(make_deployment(replicas=1), envFrom=env_from))
        await fake.wait_for(lambda: ready(fake))


class TestScheduling:
    @pytest.mark.parametrize(
        ("requests", "lacking"),
        [({"cpu": "6"}, "1 Insufficient cpu"), ({"memory": "20Gi"}, "1 Insufficient memory")],
    )
    async def test_a_pod_too_big_for_the_node_is_unschedulable(
        self, fake: KubeFake, make_deployment: MakeDeployment, requests: Manifest, lacking: str
    ) -> None:
        """pkg/scheduler/schedule_one.go and framework/plugins/noderesources/fit.go: Pending with
        PodScheduled=False/Unschedulable, no container statuses, and a FailedScheduling event; the node
        offers 4 CPU and 16Gi by default."""
        fake.create(NAMESPACE)
        fake.create(with_container(make_deployment(replicas=1), resources={"requests": requests}))
        await fake.wait_for(lambda: bool(condition(fake, "PodScheduled")))

        scheduled = condition(fake, "PodScheduled")
        events = [e for e in fake.objects("Event", "team-a") if e["reason"] == "FailedScheduling"]
        assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
        assert scheduled["message"].startswith(f"0/1 nodes are available: {lacking}.")
        assert first_status(fake)["phase"] == "Pending"
        assert "containerStatuses" not in first_status(fake)
        assert "nodeName" not in pods(fake)[0]["spec"]
        assert events
        assert events[0]["type"] == "Warning"

    async def test_requests_add_up_and_freed_room_is_used(self, make_deployment: MakeDeployment) -> None:
        """The scheduler counts what is already placed (limits stand for missing requests,
        pkg/apis/core/v1/defaults.go) and retries when a pod goes; `node_allocatable` sets the node."""
        async with KubeFake.start(ready_delay=0.0, time_scale=0.005, node_allocatable={"cpu": "1"}) as fake:
            fake.create(NAMESPACE)
            fake.create(with_container(make_deployment(replicas=3), resources={"limits": {"cpu": "400m"}}))
            await fake.wait_for(
                lambda: sorted(bool(p["spec"].get("nodeName")) for p in pods(fake)) == [False, True, True]
            )
            [waiting] = [p["metadata"]["name"] for p in pods(fake) if not p["spec"].get("nodeName")]
            victim = next(p for p in pods(fake) if p["spec"].get("nodeName"))
            fake.api.delete_object(fake.registry.named("Pod"), victim)
            await fake.wait_for(
                lambda: bool((fake.get("Pod", waiting, "team-a") or {})["spec"].get("nodeName"))
            )

    async def test_without_allocatable_anything_fits(self, make_deployment: MakeDeployment) -> None:
        """`node_allocatable=None`: an explicit option for tests that do not care about capacity."""
        async with KubeFake.start(ready_delay=0.0, time_scale=0.005, node_allocatable=None) as fake:
            fake.create(NAMESPACE)
            fake.create(with_container(make_deployment(replicas=1), resources={"requests": {"cpu": "64"}}))
            await fake.wait_for(lambda: ready(fake))
