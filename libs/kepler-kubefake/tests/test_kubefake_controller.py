"""The fake's controllers: Deployments roll out to Ready pods, or fail the way real rollouts fail."""

from collections.abc import Awaitable, Callable
from typing import Any

import kubernetes_validate
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient

from kepler_kubefake import KubeFake, PodBehaviour
from kepler_kubefake.schemas import kubernetes_version

Manifest = dict[str, Any]
MakeDeployment = Callable[..., Manifest]
Apply = Callable[..., Awaitable[Any]]


def condition(fake: KubeFake, type_: str, name: str = "web", namespace: str = "team-a") -> Manifest:
    status = (fake.get("Deployment", name, namespace) or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def rolled_out(fake: KubeFake, name: str = "web") -> Callable[[], bool]:
    return lambda: condition(fake, "Progressing", name).get("reason") == "NewReplicaSetAvailable"


def only_image(fake: KubeFake, image: str, namespace: str = "team-a") -> Callable[[], bool]:
    """Rolled out, and every pod left runs `image` (old pods gone)."""

    def check() -> bool:
        images = {p["spec"]["containers"][0]["image"] for p in fake.objects("Pod", namespace)}
        return rolled_out(fake)() and images == {image}

    return check


def pod_status(fake: KubeFake, namespace: str = "team-a") -> Manifest:
    pods = fake.objects("Pod", namespace)
    return dict(pods[0].get("status") or {}) if pods else {}


async def progress_reasons(api: ApiClient, namespace: str, since: str) -> list[tuple[int, str]]:
    """(observedGeneration, Progressing reason) of each Deployment status seen, until one is rolled out."""
    seen: list[tuple[int, str]] = []
    async with watch.Watch() as w:
        stream = w.stream(
            client.AppsV1Api(api).list_namespaced_deployment,
            namespace,
            resource_version=since,
            timeout_seconds=3,
        )
        async for event in stream:
            status: Manifest = event["raw_object"].get("status") or {}
            progressing: Manifest = next(
                (c for c in status.get("conditions") or [] if c["type"] == "Progressing"), {}
            )
            seen.append((status.get("observedGeneration", 0), progressing.get("reason", "")))
            if seen[-1][1] == "NewReplicaSetAvailable":
                break
    return seen


class TestRollout:
    async def test_a_deployment_rolls_out_to_ready_pods(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        applied = await apply(make_deployment(replicas=2))
        apps = client.AppsV1Api(api)
        reasons = []
        async with watch.Watch() as w:
            stream = w.stream(
                apps.list_namespaced_deployment,
                namespace,
                resource_version=applied.metadata.resource_version,
                timeout_seconds=3,
            )
            async for event in stream:
                progressing = [c for c in event["object"].status.conditions or [] if c.type == "Progressing"]
                reasons += [c.reason for c in progressing if c.reason not in reasons]
                if reasons[-1:] == ["NewReplicaSetAvailable"]:
                    break
        deployment = await apps.read_namespaced_deployment("web", namespace)
        [rs] = (await apps.list_namespaced_replica_set(namespace)).items
        pods = (await client.CoreV1Api(api).list_namespaced_pod(namespace)).items

        assert (reasons[0], reasons[-1]) == ("NewReplicaSetCreated", "NewReplicaSetAvailable"), reasons
        status = deployment.status
        assert (status.observed_generation, status.replicas, status.updated_replicas) == (1, 2, 2)
        assert (status.ready_replicas, status.available_replicas) == (2, 2)
        assert not status.unavailable_replicas
        assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
        assert rs.metadata.owner_references[0].uid == deployment.metadata.uid
        assert rs.metadata.name == f"web-{rs.metadata.labels['pod-template-hash']}"
        assert {p.status.phase for p in pods} == {"Running"}
        assert all(
            p.status.container_statuses[0].ready and p.status.container_statuses[0].state.running
            for p in pods
        )

    async def test_pods_wait_for_the_ready_delay(self, make_deployment: MakeDeployment) -> None:
        async with KubeFake.start(ready_delay=0.3) as slow:
            slow.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
            slow.create(make_deployment(replicas=1))
            await slow.wait_for(lambda: "containerStatuses" in pod_status(slow))
            [pending] = slow.objects("Pod", "team-a")
            await slow.wait_for(rolled_out(slow), within=3)

        waiting = pending["status"]["containerStatuses"][0]["state"]["waiting"]
        assert pending["status"]["phase"] == "Pending"
        assert waiting["reason"] == "ContainerCreating"

    async def test_controller_objects_pass_strict_validation(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment())
        await fake.wait_for(rolled_out(fake))

        for kind in ("Deployment", "ReplicaSet", "Pod", "Event"):
            for obj in fake.objects(kind, namespace):
                kubernetes_validate.validate(obj, kubernetes_version(), strict=True)

    async def test_emits_events_like_the_real_controllers(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment(replicas=1))
        await fake.wait_for(rolled_out(fake))

        events = (await client.CoreV1Api(api).list_namespaced_event(namespace)).items

        assert {"ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "Pulled", "Started"} <= {
            e.reason for e in events
        }


class TestUpdateAndRollback:
    async def test_a_new_template_gets_a_new_replicaset_and_the_old_one_scales_down(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment(image="nginx:1.27"))
        await fake.wait_for(rolled_out(fake))

        updated = await apply(make_deployment(image="nginx:1.28"))
        await fake.wait_for(lambda: rolled_out(fake)() and len(fake.objects("Pod", namespace)) == 2)

        revisions = {
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs
            for rs in fake.objects("ReplicaSet", namespace)
        }
        assert updated.metadata.generation == 2
        assert sorted(revisions) == ["1", "2"]
        assert revisions["1"]["spec"]["replicas"] == 0
        assert revisions["2"]["status"]["readyReplicas"] == 2
        assert {p["spec"]["containers"][0]["image"] for p in fake.objects("Pod", namespace)} == {"nginx:1.28"}

    async def test_going_back_to_an_old_template_reuses_its_replicaset_with_a_new_revision(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        for image in ("nginx:1.27", "nginx:1.28", "nginx:1.27"):
            await apply(make_deployment(image=image))
            await fake.wait_for(only_image(fake, image))

        by_image = {
            rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs
            for rs in fake.objects("ReplicaSet", namespace)
        }
        assert len(by_image) == 2
        assert by_image["nginx:1.27"]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


class TestFailingRollouts:
    async def test_a_crash_looping_rollout_exceeds_its_progress_deadline(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment(image="registry.local/app:crashloop", progressDeadlineSeconds=60))

        await fake.wait_for(
            lambda: condition(fake, "Progressing").get("reason") == "ProgressDeadlineExceeded", within=3
        )

        progressing = condition(fake, "Progressing")
        pods = (await client.CoreV1Api(api).list_namespaced_pod(namespace)).items
        state = pods[0].status.container_statuses[0]
        events = (
            await client.CoreV1Api(api).list_namespaced_event(namespace, field_selector="reason=BackOff")
        ).items
        assert progressing["status"] == "False"
        assert progressing["message"].endswith("has timed out progressing.")
        assert condition(fake, "Available")["status"] == "False"
        assert state.state.waiting.reason == "CrashLoopBackOff"
        assert state.restart_count >= 1
        assert events
        assert events[0].type == "Warning"

    async def test_undoing_a_timed_out_rollout_first_reports_the_stale_deadline(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """As on a real cluster (where `kubectl rollout status` trips on it too): going back to a template
        that is still available makes no progress until the failed pods are gone, so the first status
        observing the undo still says ProgressDeadlineExceeded. Followers must not take it for a verdict."""
        good = make_deployment(image="nginx:1.27", replicas=1, progressDeadlineSeconds=60)
        await apply(good)
        await fake.wait_for(rolled_out(fake))
        await apply(
            make_deployment(image="registry.local/app:crashloop", replicas=1, progressDeadlineSeconds=60)
        )
        await fake.wait_for(
            lambda: condition(fake, "Progressing").get("reason") == "ProgressDeadlineExceeded", within=3
        )

        undone = await apply(good)
        seen = await progress_reasons(api, namespace, undone.metadata.resource_version)

        generation = undone.metadata.generation
        observed = [reason for gen, reason in seen if gen == generation]
        assert observed[0] == "ProgressDeadlineExceeded"
        assert observed[-1] == "NewReplicaSetAvailable"
        await fake.wait_for(lambda: len(fake.objects("Pod", namespace)) == 1)  # the crashed one terminated

    async def test_an_unpullable_image_leaves_pods_pending(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """ErrImagePull at each pull attempt, ImagePullBackOff in between, the attempts backing off
        (pkg/kubelet/images/image_manager.go)."""
        await apply(make_deployment(image="registry.local/imagepullbackoff:1", replicas=1))
        reasons: list[str] = []

        def waiting_reason(wanted: str) -> Callable[[], bool]:
            def check() -> bool:
                statuses = pod_status(fake).get("containerStatuses") or [{}]
                reason = str(statuses[0].get("state", {}).get("waiting", {}).get("reason", ""))
                if reason and reasons[-1:] != [reason]:
                    reasons.append(reason)
                return reason == wanted

            return check

        for wanted in ("ErrImagePull", "ImagePullBackOff", "ErrImagePull", "ImagePullBackOff"):
            await fake.wait_for(waiting_reason(wanted))

        assert pod_status(fake)["phase"] == "Pending"
        assert [r for r in reasons if r != "ContainerCreating"] == [
            "ErrImagePull",
            "ImagePullBackOff",
            "ErrImagePull",
            "ImagePullBackOff",
        ]
        assert {"Failed", "BackOff"} <= {e["reason"] for e in fake.objects("Event", namespace)}

    async def test_pod_behaviour_can_be_set_through_the_fake(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        fake.set_pod_behaviour(namespace, "web", PodBehaviour.NEVER_READY)
        await apply(make_deployment(replicas=1))
        await fake.wait_for(
            lambda: (
                bool(fake.objects("Pod", namespace))
                and fake.objects("Pod", namespace)[0]["status"]["phase"] == "Running"
            )
        )
        stuck = fake.get("Deployment", "web", namespace) or {}

        fake.set_pod_behaviour(namespace, "web", None)
        await fake.wait_for(rolled_out(fake))

        assert "readyReplicas" not in stuck["status"]
        assert condition(fake, "Available")["status"] == "True"


class TestScale:
    async def test_the_scale_subresource_resizes_the_deployment(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment(replicas=1))
        apps = client.AppsV1Api(api)

        scale = await apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
        await fake.wait_for(lambda: len(fake.objects("Pod", namespace)) == 3)
        read = await apps.read_namespaced_deployment_scale("web", namespace)

        assert scale.spec.replicas == 3
        assert read.status.selector == "app.kubernetes.io/name=web"
