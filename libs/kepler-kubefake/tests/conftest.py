"""Fixtures: a fresh fake per test, and the real kubernetes-asyncio client pointed at it."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient, Configuration

from kepler_kubefake import KubeFake

APPLY = "application/apply-patch+yaml"


@pytest.fixture
async def fake() -> AsyncIterator[KubeFake]:
    async with KubeFake.start(ready_delay=0.0, time_scale=0.005, bookmark_interval=0.05) as server:
        yield server
        assert server.controller_errors == []


@pytest.fixture
async def api(fake: KubeFake) -> AsyncIterator[ApiClient]:
    async with ApiClient(Configuration(host=fake.url)) as api_client:
        yield api_client


@pytest.fixture
async def namespace(api: ApiClient) -> str:
    await client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name="team-a"))
    )
    return "team-a"


Manifest = dict[str, Any]
MakeDeployment = Callable[..., Manifest]
Apply = Callable[..., Awaitable[Any]]


def _deployment(
    name: str = "web", image: str = "nginx:1.27", replicas: int = 2, namespace: str = "team-a", **spec: Any
) -> Manifest:
    labels = {"app.kubernetes.io/name": name}
    container = {"name": name, "image": image, "ports": [{"containerPort": 8080}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}},
            **spec,
        },
    }


@pytest.fixture
def make_deployment() -> MakeDeployment:
    """A Deployment manifest like app-service builds: `make_deployment(image=..., replicas=..., **spec)`."""
    return _deployment


@pytest.fixture
def apply(api: ApiClient) -> Apply:
    """Server-side apply a Deployment the way app-service does: PATCH with the apply-patch content type."""

    async def run(body: Manifest, manager: str = "kepler", force: bool = False) -> Any:
        meta = body["metadata"]
        apps = client.AppsV1Api(api)
        # The 36.x stubs omit `_content_type`, which the generated code accepts and SSA needs.
        return await apps.patch_namespaced_deployment(  # type: ignore[call-arg]
            meta["name"], meta["namespace"], body, field_manager=manager, force=force, _content_type=APPLY
        )

    return run
