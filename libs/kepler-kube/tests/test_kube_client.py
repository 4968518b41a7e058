"""The real kubernetes-asyncio client against the contract fake: every non-2xx answer is an error with the
cluster's reason, never data read as an object (kubernetes-asyncio's `_preload_content=False` path hands
error bodies back as if they were objects)."""

from collections.abc import Callable

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from kepler_db import Cluster
from kepler_kube.base import ClusterUnavailable, Kube, NotInCluster, WatchExpired
from kepler_kube.registry import ClusterRegistry
from kepler_kubefake import KubeFake, ServerError, WatchGone

ClusterRow = Callable[..., Cluster]

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
CONFIG = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings", "namespace": "team-a"},
    "data": {"colour": "blue"},
}


@pytest.fixture
async def kube(registry: ClusterRegistry, cluster_row: ClusterRow) -> Kube:
    kube = await registry.client(cluster_row())
    await kube.apply(NAMESPACE)
    return kube


class TestReads:
    async def test_apply_then_get(self, kube: Kube) -> None:
        await kube.apply(CONFIG)
        got = await kube.get("ConfigMap", "team-a", "settings")
        assert got is not None
        assert got["data"] == {"colour": "blue"}

    async def test_missing_object_is_none(self, kube: Kube) -> None:
        """404 NotFound (API conventions, "Response Status Kind") means absent, not an error."""
        assert await kube.get("ConfigMap", "team-a", "nope") is None

    async def test_delete_of_missing_object_is_false(self, kube: Kube) -> None:
        assert await kube.delete("ConfigMap", "team-a", "nope") is False

    async def test_scale_of_missing_deployment_names_it(self, kube: Kube) -> None:
        with pytest.raises(NotInCluster, match="team-a/web"):
            await kube.apply_scale("team-a", "web", 3)


class TestErrorsAreNeverData:
    async def test_server_error_is_cluster_unavailable(self, kube: Kube, fake: KubeFake) -> None:
        """An overloaded API server answers 503 with a Status body; a list must not read as empty."""
        fake.inject(ServerError(status=503, path="/configmaps"))
        with pytest.raises(ClusterUnavailable, match="503"):
            await kube.list("ConfigMap", "team-a")

    async def test_invalid_object_is_an_api_error(self, kube: Kube) -> None:
        """422 Invalid from validation reaches the caller with the server's message."""
        bad = {**CONFIG, "metadata": {"name": "Not_A_Name", "namespace": "team-a"}}
        with pytest.raises(ApiException) as raised:
            await kube.apply(bad)
        assert raised.value.status == 422

    async def test_expired_watch_raises(self, kube: Kube, fake: KubeFake) -> None:
        """A resourceVersion too old answers 410 Gone (API concepts, "Efficient detection of changes")."""
        listed = await kube.list("ConfigMap", "team-a")
        fake.inject(WatchGone(path="/configmaps"))
        with pytest.raises(WatchExpired):
            async for _ in kube.watch("ConfigMap", "team-a", listed["metadata"]["resourceVersion"]):
                pass
