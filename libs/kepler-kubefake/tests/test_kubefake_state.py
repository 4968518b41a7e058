"""`--state-file`: the sandbox cluster keeps its objects across a restart, as a real cluster would."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient, Configuration

from kepler_kubefake import KubeFake
from kepler_kubefake.errors import ApiError
from kepler_kubefake.workloads import pod_ready

MakeDeployment = Callable[..., dict[str, Any]]


def rv(obj: dict[str, object]) -> int:
    metadata = obj["metadata"]
    assert isinstance(metadata, dict)
    return int(metadata["resourceVersion"])


async def roll_out(fake: KubeFake, deployment: dict[str, object]) -> None:
    fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    fake.create(deployment)
    await fake.wait_for(lambda: len(fake.objects("Pod", "team-a")) == 2)


class TestStateFile:
    async def test_objects_survive_a_restart_and_versions_keep_increasing(
        self, tmp_path: Path, make_deployment: MakeDeployment
    ) -> None:
        """`make run` restarted the sandbox empty while Kepler still showed the app as rolled out."""
        state = tmp_path / "cluster.json"
        async with KubeFake.start(ready_delay=0.0, state_file=state) as first:
            await roll_out(first, make_deployment(replicas=2))
            await first.wait_for(lambda: all(pod_ready(p) for p in first.objects("Pod", "team-a")))
            before = first.get("Deployment", "web", "team-a")
            assert before is not None
            last_version = first.store.revision

        async with KubeFake.start(ready_delay=0.0, state_file=state) as second:
            after = second.get("Deployment", "web", "team-a")
            assert after is not None
            assert after["metadata"]["uid"] == before["metadata"]["uid"]
            assert after["spec"] == before["spec"]
            assert len(second.objects("Pod", "team-a")) == 2
            async with ApiClient(Configuration(host=second.url)) as api:
                scaled = await client.AppsV1Api(api).patch_namespaced_deployment_scale(
                    "web", "team-a", {"spec": {"replicas": 3}}
                )
            assert int(scaled.metadata.resource_version) > last_version
            await second.wait_for(lambda: len(second.objects("Pod", "team-a")) == 3)

    async def test_pods_not_ready_at_the_stop_get_ready_after_the_restart(
        self, tmp_path: Path, make_deployment: MakeDeployment
    ) -> None:
        """Restored objects were never announced as changes: the controllers must look at them anyway, as
        kube-controller-manager's informers do on start (a full LIST before the watch:
        staging/src/k8s.io/client-go/tools/cache/reflector.go, ListAndWatch)."""
        state = tmp_path / "cluster.json"
        async with KubeFake.start(ready_delay=3600.0, state_file=state) as first:
            await roll_out(first, make_deployment(replicas=2))
        async with KubeFake.start(ready_delay=0.0, state_file=state) as second:
            await second.wait_for(lambda: all(pod_ready(p) for p in second.objects("Pod", "team-a")))
            await second.wait_for(
                lambda: (
                    (second.get("Deployment", "web", "team-a") or {}).get("status", {}).get("readyReplicas")
                    == 2
                )
            )

    async def test_without_a_state_file_a_restart_starts_empty(self, make_deployment: MakeDeployment) -> None:
        """Tests rely on a fresh fake per test: keeping state is an explicit option."""
        async with KubeFake.start(ready_delay=0.0) as first:
            await roll_out(first, make_deployment(replicas=2))
        async with KubeFake.start(ready_delay=0.0) as second:
            assert second.get("Deployment", "web", "team-a") is None

    async def test_a_watch_from_before_the_restart_is_told_to_relist(
        self, tmp_path: Path, make_deployment: MakeDeployment
    ) -> None:
        """The fake keeps objects, not history: a client resuming an old watch gets 410 Gone and re-lists
        (what Kepler's live status does), instead of silently missing what changed meanwhile. A restarted
        kube-apiserver does the same: its watch cache starts from the current state only
        (staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go, "too old resource version")."""
        state = tmp_path / "cluster.json"
        async with KubeFake.start(ready_delay=0.0, state_file=state) as first:
            await roll_out(first, make_deployment(replicas=2))
            seen = first.get("Namespace", "team-a")  # written before the Deployment: an old version
            assert seen is not None
        async with KubeFake.start(ready_delay=0.0, state_file=state) as second:
            deployments = second.registry.named("Deployment")
            with pytest.raises(ApiError) as gone:
                second.store.since(deployments, rv(seen))
            assert gone.value.code == 410
            assert second.store.since(deployments, second.store.revision) == []

    async def test_a_deletion_in_progress_completes_after_the_restart(
        self, tmp_path: Path, make_deployment: MakeDeployment
    ) -> None:
        """A Deployment deleted in the foreground before the stop still has its foregroundDeletion finalizer
        when restored; the garbage collector takes it up again on start, as the real one does from its
        informers' initial list (pkg/controller/garbagecollector/graph_builder.go)."""
        state = tmp_path / "cluster.json"
        async with KubeFake.start(ready_delay=0.0, state_file=state) as first:
            await roll_out(first, make_deployment(replicas=2))
            async with ApiClient(Configuration(host=first.url)) as api:
                await client.AppsV1Api(api).delete_namespaced_deployment(
                    "web", "team-a", propagation_policy="Foreground"
                )
        async with KubeFake.start(ready_delay=0.0, time_scale=0.005, state_file=state) as second:
            restored = second.get("Deployment", "web", "team-a")
            await second.wait_for(lambda: second.get("Deployment", "web", "team-a") is None)

        assert restored is not None
        assert restored["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert second.objects("Pod", "team-a") == []
