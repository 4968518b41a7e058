"""The fake deployment controller against pkg/controller/deployment: waves, generation, pause, replica
failures and Recreate."""

from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from kepler_kubefake import KubeFake
from kepler_kubefake.store import Change
from kepler_kubefake.workloads import fenceposts

Manifest = dict[str, Any]
MakeDeployment = Callable[..., Manifest]
Apply = Callable[..., Awaitable[Any]]


def condition(fake: KubeFake, type_: str, name: str = "web") -> Manifest:
    status = (fake.get("Deployment", name, "team-a") or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def rolled_out(fake: KubeFake) -> bool:
    return condition(fake, "Progressing").get("reason") == "NewReplicaSetAvailable"


def replica_sets(fake: KubeFake) -> list[Manifest]:
    return fake.objects("ReplicaSet", "team-a")


def images(fake: KubeFake) -> set[str]:
    return {p["spec"]["containers"][0]["image"] for p in fake.objects("Pod", "team-a")}


class TestRollingWaves:
    def test_percentages_round_surge_up_and_unavailable_down(self, make_deployment: MakeDeployment) -> None:
        """pkg/controller/deployment/util/deployment_util.go (ResolveFenceposts)."""
        ten = make_deployment(replicas=10)
        assert fenceposts(ten) == (3, 2)  # 25 % of 10: 2.5
        zero = make_deployment(
            replicas=3, strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}
        )
        assert fenceposts(zero) == (0, 1)  # both 0 would stall: unavailable becomes 1

    async def test_a_rollout_stays_within_max_surge_and_max_unavailable(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """pkg/controller/deployment/rolling.go: the new ReplicaSet grows by maxSurge, old ones shrink as
        new pods become available, so at no time are there more than replicas+3 pods wanted or fewer than
        replicas-2 available (10 replicas, 25 %/25 %)."""
        await apply(make_deployment(replicas=10))
        await fake.wait_for(lambda: rolled_out(fake))
        totals: list[int] = []
        available: list[int] = []
        new_sizes: list[int] = []

        def observe(_: Change) -> None:  # every write, synchronously: no state is missed
            rss = fake.store.objects(fake.registry.named("ReplicaSet"), namespace)
            totals.append(sum(rs["spec"]["replicas"] for rs in rss))
            available.append(sum((rs.get("status") or {}).get("availableReplicas", 0) for rs in rss))
            new = [
                rs for rs in rss if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
            ]
            if new and new_sizes[-1:] != [new[0]["spec"]["replicas"]]:
                new_sizes.append(new[0]["spec"]["replicas"])

        fake.store.listen(observe)
        await apply(make_deployment(replicas=10, image="nginx:1.28"))
        await fake.wait_for(lambda: rolled_out(fake) and images(fake) == {"nginx:1.28"})

        assert max(totals) <= 13
        assert min(available) >= 8
        assert new_sizes[0] == 3
        assert new_sizes[-1] == 10
        assert len(new_sizes) > 2  # waves, not a jump to full size

    async def test_min_ready_seconds_holds_back_the_old_replicaset(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """A new pod counts as available only minReadySeconds after it turned Ready (rolling.go with
        pkg/controller/replicaset availability): the old ReplicaSet waits for it."""
        spec = {"minReadySeconds": 30, "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
        await apply(make_deployment(replicas=1, **spec))
        await fake.wait_for(lambda: rolled_out(fake))
        await apply(make_deployment(replicas=1, image="nginx:1.28", **spec))
        await fake.wait_for(
            lambda: any(
                p["status"].get("phase") == "Running"
                and p["spec"]["containers"][0]["image"] == "nginx:1.28"
                and all(c["ready"] for c in p["status"].get("containerStatuses") or [])
                for p in fake.objects("Pod", namespace)
            )
        )

        old = next(
            rs
            for rs in replica_sets(fake)
            if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
        )
        assert old["spec"]["replicas"] == 1
        await fake.wait_for(lambda: rolled_out(fake) and images(fake) == {"nginx:1.28"})


class TestGeneration:
    async def test_spec_and_annotation_changes_bump_generation_labels_do_not(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment
    ) -> None:
        """pkg/registry/apps/deployment/strategy.go (PrepareForUpdate): spec or annotations changed →
        generation+1 (annotations are copied to ReplicaSets); labels and status do not count, nor does the
        controller's own revision annotation (written through UpdateStatus)."""
        apps = client.AppsV1Api(api)
        fake.create(make_deployment())
        await fake.wait_for(lambda: rolled_out(fake))
        first = await apps.read_namespaced_deployment("web", namespace)

        labelled = await apps.patch_namespaced_deployment(
            "web", namespace, {"metadata": {"labels": {"tier": "web"}}}
        )
        annotated = await apps.patch_namespaced_deployment(
            "web", namespace, {"metadata": {"annotations": {"kepler.dev/release": "2"}}}
        )
        scaled = await apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 3}})

        assert first.metadata.generation == 1
        assert first.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
        assert labelled.metadata.generation == 1
        assert annotated.metadata.generation == 2
        assert scaled.metadata.generation == 3


class TestPause:
    async def test_a_paused_deployment_gets_no_new_replicaset(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """pkg/controller/deployment/sync.go (sync, checkPausedConditions): paused, a template change makes
        no ReplicaSet and Progressing is Unknown/DeploymentPaused; resumed, the rollout goes on."""
        await apply(make_deployment(replicas=1))
        await fake.wait_for(lambda: rolled_out(fake))
        await apply(make_deployment(replicas=1, paused=True))
        await apply(make_deployment(replicas=1, paused=True, image="nginx:1.28"))
        await fake.wait_for(lambda: condition(fake, "Progressing").get("reason") == "DeploymentPaused")
        paused = condition(fake, "Progressing")
        sets_while_paused = len(replica_sets(fake))

        await apply(make_deployment(replicas=1, image="nginx:1.28"))
        await fake.wait_for(lambda: rolled_out(fake) and images(fake) == {"nginx:1.28"})

        assert (paused["status"], paused["message"]) == ("Unknown", "Deployment is paused")
        assert sets_while_paused == 1
        assert len(replica_sets(fake)) == 2


class TestReplicaFailure:
    async def test_refused_pod_creation_is_reported_by_the_deployment(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """pkg/controller/replicaset/replica_set.go (calculateStatus: ReplicaFailure/FailedCreate with the
        create error) and pkg/controller/deployment/progress.go (getReplicaFailures): the Deployment
        carries its ReplicaSet's condition; it clears once pods can be created again."""
        fake.fail_replica_creation(namespace, "web", message="exceeded quota: compute, requested: pods=1")
        await apply(make_deployment(replicas=1))
        await fake.wait_for(lambda: bool(condition(fake, "ReplicaFailure")))
        failure = condition(fake, "ReplicaFailure")
        [rs] = replica_sets(fake)
        events = [e for e in fake.objects("Event", namespace) if e["reason"] == "FailedCreate"]

        fake.allow_replica_creation(namespace, "web")
        await fake.wait_for(lambda: rolled_out(fake))

        assert (failure["status"], failure["reason"]) == ("True", "FailedCreate")
        assert failure["message"] == (
            f'pods "{rs["metadata"]["name"]}-" is forbidden: exceeded quota: compute, requested: pods=1'
        )
        assert rs["status"]["conditions"][0]["type"] == "ReplicaFailure"
        assert events
        assert events[0]["message"].startswith("Error creating: pods ")
        assert condition(fake, "ReplicaFailure") == {}


class TestRecreate:
    async def test_old_pods_are_gone_before_new_ones_are_created(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """pkg/controller/deployment/recreate.go (oldPodsRunning): Terminating old pods still count."""
        await apply(make_deployment(replicas=2, strategy={"type": "Recreate"}))
        await fake.wait_for(lambda: rolled_out(fake))
        mixed: list[set[str]] = []

        def observe(_: Change) -> None:
            mixed.append({p["spec"]["containers"][0]["image"] for p in fake.store.objects(pods, namespace)})

        pods = fake.registry.named("Pod")
        fake.store.listen(observe)

        await apply(make_deployment(replicas=2, image="nginx:1.28", strategy={"type": "Recreate"}))
        await fake.wait_for(lambda: rolled_out(fake) and images(fake) == {"nginx:1.28"})

        assert {"nginx:1.27", "nginx:1.28"} not in mixed
