"""A fresh Kubernetes contract fake per test, and a registry that opens credentials sealed for it."""

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from kepler_db import Cluster
from kepler_kit.crypto import SecretBox
from kepler_kube.base import ClusterCredentials, Kube
from kepler_kube.client import KubernetesCluster
from kepler_kube.registry import ClusterRegistry
from kepler_kubefake import KubeFake

TOKEN = "kubefake-token"
BOX_KEY = "kepler-kube-tests-platform-key"


@pytest.fixture
async def fake() -> AsyncIterator[KubeFake]:
    async with KubeFake.start(token=TOKEN, ready_delay=0.0, bookmark_interval=0.05) as server:
        yield server


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(BOX_KEY, "clusters")


def factory(credentials: ClusterCredentials) -> Kube:
    return KubernetesCluster(credentials, timeout=5.0, watch_seconds=2)


@pytest.fixture
async def registry(box: SecretBox) -> AsyncIterator[ClusterRegistry]:
    registry = ClusterRegistry(box, factory)
    yield registry
    await registry.close()


ClusterRow = Callable[..., Cluster]


@pytest.fixture
def cluster_row(fake: KubeFake, box: SecretBox) -> ClusterRow:
    """A cluster as app-service stores it: the token sealed under the platform key."""

    def make(token: str | None = TOKEN, sealed: bytes | None = None) -> Cluster:
        return Cluster(
            id=uuid.uuid4(),
            name="east",
            api_url=fake.url,
            in_cluster=False,
            insecure_skip_tls_verify=False,
            token_sealed=sealed if sealed is not None else box.seal(token.encode()) if token else None,
            updated_at=datetime.now(UTC),
        )

    return make
