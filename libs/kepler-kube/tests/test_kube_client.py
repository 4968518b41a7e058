"""The real kubernetes-asyncio client against the contract fake: every non-2xx answer is an error with the
cluster's reason, never data read as an object (kubernetes-asyncio's `_preload_content=False` path hands
error bodies back as if they were objects)."""

import asyncio
from collections.abc import Callable

import pytest

from kepler_db import Cluster
from kepler_kube.base import (
    ClusterCredentials,
    ClusterUnavailable,
    CredentialsRefused,
    Kube,
    KubeForbidden,
    KubeInvalid,
    NotInCluster,
    WatchExpired,
)
from kepler_kube.client import KubernetesCluster
from kepler_kube.registry import ClusterRegistry
from kepler_kubefake import Delay, Forbid, KubeFake, ServerError, Throttle, WatchGone

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
        fake.inject(ServerError(status=503, times=50, path="/configmaps"))
        with pytest.raises(ClusterUnavailable, match="503"):
            await kube.list("ConfigMap", "team-a")

    async def test_invalid_object_names_the_fields(self, kube: Kube) -> None:
        """422 Invalid (apimachinery `NewInvalid`) reaches the caller typed, with the field causes."""
        bad = {**CONFIG, "metadata": {"name": "Not_A_Name", "namespace": "team-a"}}
        with pytest.raises(KubeInvalid) as raised:
            await kube.apply(bad)
        assert raised.value.answered == 422
        assert raised.value.reason == "Invalid"
        assert [cause.field for cause in raised.value.causes] == ["metadata.name"]

    @pytest.mark.parametrize("as_event", [True, False])
    async def test_expired_watch_raises(self, kube: Kube, fake: KubeFake, as_event: bool) -> None:
        """A resourceVersion too old answers an ERROR event with a 410 Status (the watch cache), or HTTP 410
        (API concepts, "Efficient detection of changes"): both are WatchExpired."""
        listed = await kube.list("ConfigMap", "team-a")
        fake.inject(WatchGone(path="/configmaps", as_event=as_event))
        with pytest.raises(WatchExpired):
            async for _ in kube.watch("ConfigMap", "team-a", listed["metadata"]["resourceVersion"]):
                pass


class TestRefusals:
    async def test_an_rbac_denial_is_forbidden_not_a_success(self, kube: Kube, fake: KubeFake) -> None:
        """403 from the authorizer (`... cannot delete resource "configmaps"`): the delete did not happen,
        and must not read as if it did."""
        await kube.apply(CONFIG)
        fake.inject(Forbid(verb="delete", resource="configmaps"))
        with pytest.raises(KubeForbidden, match="cannot delete") as raised:
            await kube.delete("ConfigMap", "team-a", "settings")
        assert not raised.value.terminating
        assert await kube.get("ConfigMap", "team-a", "settings") is not None

    async def test_a_terminating_namespace_refuses_creates(self, kube: Kube, fake: KubeFake) -> None:
        """Creates in a namespace being deleted answer 403 with cause NamespaceTerminating
        (plugin/pkg/admission/namespace/lifecycle): a 409 to Kepler's callers, not a 502."""
        fake.terminate_namespace("team-a", hold=True)
        with pytest.raises(KubeForbidden) as raised:
            await kube.apply(CONFIG)
        assert raised.value.terminating
        assert raised.value.status == 409

    async def test_a_too_new_version_is_expired(self, kube: Kube, fake: KubeFake) -> None:
        """A lagging API server answers a version it has not seen with 504 ResourceVersionTooLarge
        (apimachinery `NewTooLargeResourceVersionError`): re-list, as for 410."""
        listed = await kube.list("ConfigMap", "team-a")
        ahead = str(int(listed["metadata"]["resourceVersion"]) + 1000)
        with pytest.raises(WatchExpired):
            async for _ in kube.watch("ConfigMap", "team-a", ahead):
                pass


class TestRetries:
    async def test_throttling_is_retried_after_retry_after(self, kube: Kube, fake: KubeFake) -> None:
        """API Priority and Fairness answers 429 with `Retry-After` and a plain-text body: waited out."""
        fake.inject(Throttle(verb="get", resource="configmaps", times=1, retry_after=1))
        await kube.apply(CONFIG)
        assert await kube.get("ConfigMap", "team-a", "settings") is not None
        gets = [r for r in fake.requests if r.method == "GET" and r.path.endswith("/settings")]
        assert [r.status for r in gets] == [429, 200]

    async def test_overload_is_retried(self, kube: Kube, fake: KubeFake) -> None:
        """A 503 or 429 is the API server shedding load (API Priority and Fairness): trying again succeeds."""
        fake.inject(ServerError(status=503, times=2, path="/configmaps"))
        await kube.apply(CONFIG)
        applies = [r for r in fake.requests if r.method == "PATCH" and r.path.endswith("/settings")]
        assert len(applies) == 3
        got = await kube.get("ConfigMap", "team-a", "settings")
        assert got is not None

    async def test_persistent_overload_gives_up(self, kube: Kube, fake: KubeFake) -> None:
        """Retries are bounded: a server that keeps failing is unavailable, after a few attempts."""
        fake.inject(ServerError(status=500, times=50, path="/configmaps"))
        with pytest.raises(ClusterUnavailable, match="500"):
            await kube.list("ConfigMap", "team-a")
        lists = [r for r in fake.requests if r.path.endswith("/configmaps")]
        assert len(lists) == KubernetesCluster.RETRIES


class TestAuth:
    async def test_refused_token_is_credentials_refused(self, fake: KubeFake) -> None:
        """401 on every path for a bad bearer token (authentication filter): the stored credentials are
        wrong, which no retry mends."""
        kube = KubernetesCluster(ClusterCredentials("east", fake.url, token="wrong"), timeout=5.0)
        try:
            with pytest.raises(CredentialsRefused, match="401"):
                await kube.ping()
            with pytest.raises(CredentialsRefused):
                await kube.get("ConfigMap", "default", "x")
        finally:
            await kube.close()


class TestSilentWatch:
    async def test_a_watch_that_never_answers_is_cut(self, fake: KubeFake) -> None:
        """A watch whose server goes silent (a half-open connection) is cut by the client's own timeout, a
        little after the server's `timeoutSeconds`, instead of hanging the watcher."""
        creds = ClusterCredentials("east", fake.url, token="kubefake-token")
        kube = KubernetesCluster(creds, timeout=0.5, watch_seconds=1)
        fake.inject(Delay(seconds=4, times=1, path="/configmaps"))
        try:
            async with asyncio.timeout(10):
                with pytest.raises(ClusterUnavailable, match="TimeoutError"):
                    async for _ in kube.watch("ConfigMap", "default", None):
                        pass
        finally:
            await kube.close()
