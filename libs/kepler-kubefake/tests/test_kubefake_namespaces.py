"""Namespace deletion takes time, and a Terminating namespace refuses new content."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from kepler_kubefake import KubeFake

MakeDeployment = Callable[..., dict[str, Any]]
Apply = Callable[..., Awaitable[Any]]

KINDS = ("Deployment", "ReplicaSet", "Pod", "Event")


def configmap(name: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "v"})


class TestTerminating:
    async def test_delete_answers_terminating_and_the_namespace_goes_later(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """`pkg/registry/core/namespace/storage/storage.go` (Delete sets deletionTimestamp, phase Terminating,
        finalizer `kubernetes`) and `pkg/controller/namespace/deletion/namespaced_resources_deleter.go`
        (content deleted, then the finalizer removed, then the namespace is gone)."""
        await apply(make_deployment())
        await fake.wait_for(lambda: len(fake.objects("Pod", namespace)) == 2)

        response = await client.CoreV1Api(api).delete_namespace(namespace, _preload_content=False)
        answered = json.loads(await response.read())  # type: ignore[attr-defined]
        right_after = fake.get("Namespace", namespace)
        await fake.wait_for(lambda: fake.get("Namespace", namespace) is None)

        assert answered["kind"] == "Namespace"
        assert answered["status"]["phase"] == "Terminating"
        assert answered["metadata"]["deletionTimestamp"]
        assert answered["spec"]["finalizers"] == ["kubernetes"]
        assert right_after is not None
        assert [fake.objects(kind, namespace) for kind in KINDS] == [[]] * len(KINDS)

    async def test_creates_in_a_terminating_namespace_are_forbidden(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """`plugin/pkg/admission/namespace/lifecycle/admission.go`: a CREATE in a Terminating namespace is
        403 Forbidden with a `NamespaceTerminating` cause; server-side apply that would create is a CREATE."""
        fake.terminate_namespace(namespace, hold=True)

        with pytest.raises(ApiException) as posted:
            await client.CoreV1Api(api).create_namespaced_config_map(namespace, configmap("late"))
        with pytest.raises(ApiException) as applied:
            await apply(make_deployment())

        for refused in (posted, applied):
            status = json.loads(refused.value.body or b"{}")
            assert refused.value.status == 403
            assert status["reason"] == "Forbidden"
            assert status["message"].endswith(f"namespace {namespace} because it is being terminated")
            assert status["details"]["causes"] == [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
        assert fake.get("Namespace", namespace)["status"]["phase"] == "Terminating"  # type: ignore[index]

    async def test_a_held_namespace_goes_once_released(self, fake: KubeFake, namespace: str) -> None:
        """The fake's steering for tests: a namespace kept Terminating as long as a test needs."""
        fake.terminate_namespace(namespace, hold=True)

        fake.release_namespace(namespace)

        assert fake.get("Namespace", namespace) is None

    async def test_deleting_a_terminating_namespace_again_conflicts(
        self, fake: KubeFake, api: ApiClient, namespace: str
    ) -> None:
        """`pkg/registry/core/namespace/storage/storage.go`: a second DELETE while Terminating is 409."""
        fake.terminate_namespace(namespace, hold=True)

        with pytest.raises(ApiException) as again:
            await client.CoreV1Api(api).delete_namespace(namespace)

        assert again.value.status == 409
        assert (
            "The system is ensuring all content is removed"
            in json.loads(again.value.body or b"{}")["message"]
        )
