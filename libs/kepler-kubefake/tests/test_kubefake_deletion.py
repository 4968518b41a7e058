"""Deleting takes time: graceful pod termination and asynchronous garbage collection."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from kepler_kubefake import KubeFake

Manifest = dict[str, Any]


@pytest.fixture
async def fake() -> AsyncIterator[KubeFake]:
    """Time 20x faster, not 200x: what a test reads right after a DELETE must not race a 5 ms collector."""
    async with KubeFake.start(ready_delay=0.0, time_scale=0.05, bookmark_interval=0.05) as server:
        yield server
        assert server.controller_errors == []


MakeDeployment = Callable[..., Manifest]
Apply = Callable[..., Awaitable[Any]]


def running(fake: KubeFake, count: int, namespace: str = "team-a") -> Callable[[], bool]:
    def check() -> bool:
        pods = fake.objects("Pod", namespace)
        return len(pods) == count and all(p["status"].get("phase") == "Running" for p in pods)

    return check


class TestGracefulPodDeletion:
    async def test_a_deleted_pod_is_terminating_then_gone(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """pkg/registry/core/pod/strategy.go (CheckGracefulDelete): DELETE answers 200 with
        deletionTimestamp and deletionGracePeriodSeconds (terminationGracePeriodSeconds, default 30); the
        pod stays until the kubelet has stopped its containers, which exit soon on SIGTERM."""
        await apply(make_deployment(replicas=1))
        await fake.wait_for(running(fake, 1))
        [pod] = fake.objects("Pod", namespace)
        name = pod["metadata"]["name"]

        deleted = await client.CoreV1Api(api).delete_namespaced_pod(name, namespace)
        staying = fake.get("Pod", name, namespace)
        await fake.wait_for(lambda: fake.get("Pod", name, namespace) is None)

        assert deleted.metadata.deletion_timestamp is not None
        assert deleted.metadata.deletion_grace_period_seconds == 30
        assert staying is not None
        assert "Killing" in {e["reason"] for e in fake.objects("Event", namespace)}

    async def test_a_pod_ignoring_sigterm_takes_its_grace_period_and_zero_deletes_at_once(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """Same file: a container that ignores SIGTERM is killed when the grace period is over. A later
        DELETE may only shorten the grace period, and gracePeriodSeconds=0 removes the pod at once
        (staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go, BeforeDelete)."""
        await apply(make_deployment(replicas=1, image="registry.local/app:ignoresigterm"))
        await fake.wait_for(running(fake, 1))
        [pod] = fake.objects("Pod", namespace)
        name = pod["metadata"]["name"]
        core = client.CoreV1Api(api)

        await core.delete_namespaced_pod(name, namespace, grace_period_seconds=60)
        await asyncio.sleep(fake.clock.real_seconds(5))  # a pod that handles SIGTERM is gone after 1 s
        lingering = fake.get("Pod", name, namespace)
        longer = await core.delete_namespaced_pod(name, namespace, grace_period_seconds=90)
        shorter = await core.delete_namespaced_pod(name, namespace, grace_period_seconds=10)
        await core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

        assert lingering is not None
        assert lingering["metadata"]["deletionGracePeriodSeconds"] == 60
        assert longer.metadata.deletion_grace_period_seconds == 60
        assert shorter.metadata.deletion_grace_period_seconds == 10
        moved = longer.metadata.deletion_timestamp - shorter.metadata.deletion_timestamp
        assert moved.total_seconds() == 50
        assert fake.get("Pod", name, namespace) is None

    async def test_an_unscheduled_pod_is_deleted_at_once(
        self, fake: KubeFake, api: ApiClient, namespace: str
    ) -> None:
        """CheckGracefulDelete: a pod on no node has nothing to stop."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "big", "namespace": namespace},
            "spec": {
                "containers": [{"name": "c", "image": "nginx:1.27", "resources": {"requests": {"cpu": "64"}}}]
            },
        }
        fake.create(pod)
        await fake.wait_for(
            lambda: bool((fake.get("Pod", "big", namespace) or {}).get("status", {}).get("conditions"))
        )

        await client.CoreV1Api(api).delete_namespaced_pod("big", namespace)

        assert fake.get("Pod", "big", namespace) is None


class TestGarbageCollection:
    async def test_dependents_of_a_deleted_deployment_go_asynchronously(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """pkg/controller/garbagecollector: with the default Background propagation the Deployment is gone
        at once, its ReplicaSet a moment later, its pods after terminating."""
        await apply(make_deployment(replicas=2))
        await fake.wait_for(running(fake, 2))

        await client.AppsV1Api(api).delete_namespaced_deployment("web", namespace)
        right_after = (fake.get("Deployment", "web", namespace), len(fake.objects("ReplicaSet", namespace)))
        await fake.wait_for(
            lambda: not fake.objects("ReplicaSet", namespace) and not fake.objects("Pod", namespace)
        )

        assert right_after == (None, 1)

    async def test_foreground_keeps_the_owner_until_its_dependents_are_gone(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """Same package: propagationPolicy=Foreground sets the foregroundDeletion finalizer; the owner is
        removed once no dependent is left."""
        await apply(make_deployment(replicas=2))
        await fake.wait_for(running(fake, 2))
        pods_left: list[int] = []

        await client.AppsV1Api(api).delete_namespaced_deployment(
            "web", namespace, propagation_policy="Foreground"
        )
        owner = fake.get("Deployment", "web", namespace)

        def gone() -> bool:
            if fake.get("Deployment", "web", namespace) is None:
                pods_left.append(len(fake.objects("Pod", namespace)))
                return True
            return False

        await fake.wait_for(gone)

        assert owner is not None
        assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert owner["metadata"]["deletionTimestamp"]
        assert pods_left == [0]
        assert fake.objects("ReplicaSet", namespace) == []

    async def test_orphan_leaves_the_dependents_running(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """Same package: Orphan strips the owner reference and deletes nothing else."""
        await apply(make_deployment(replicas=1))
        await fake.wait_for(running(fake, 1))

        await client.AppsV1Api(api).delete_namespaced_deployment(
            "web", namespace, propagation_policy="Orphan"
        )
        await asyncio.sleep(fake.clock.real_seconds(5))  # longer than the collector takes to act

        [rs] = fake.objects("ReplicaSet", namespace)
        assert "ownerReferences" not in rs["metadata"]
        assert len(fake.objects("Pod", namespace)) == 1
