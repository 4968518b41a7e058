"""The cluster registry: one pooled client per cluster, built from the sealed credentials, rebuilt only
when the cluster's row changes; credentials that do not open are that cluster's problem alone."""

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from kepler_db import Cluster
from kepler_kit.crypto import SecretBox
from kepler_kube.base import BadCredentials, CredentialsRefused
from kepler_kube.registry import ClusterRegistry

ClusterRow = Callable[..., Cluster]


class TestClient:
    async def test_unseals_the_token_the_cluster_requires(
        self, registry: ClusterRegistry, cluster_row: ClusterRow
    ) -> None:
        """The fake answers 401 to any other bearer token, as an API server does (Kubernetes docs,
        "Authenticating": a request whose token is not accepted is answered 401 Unauthorized)."""
        kube = await registry.client(cluster_row())
        await kube.ping()

    async def test_a_token_the_cluster_refuses_is_credentials_refused(
        self, registry: ClusterRegistry, cluster_row: ClusterRow
    ) -> None:
        kube = await registry.client(cluster_row(token="not-the-token"))
        with pytest.raises(CredentialsRefused, match="east.*401"):
            await kube.ping()

    async def test_reused_until_the_row_changes(
        self, registry: ClusterRegistry, cluster_row: ClusterRow
    ) -> None:
        row = cluster_row()
        first = await registry.client(row)
        assert await registry.client(row) is first
        row.updated_at = datetime.now(UTC)
        rebuilt = await registry.client(row)
        assert rebuilt is not first
        await rebuilt.ping()


class TestCredentialsThatDoNotOpen:
    async def test_sealed_under_another_key_is_unusable_not_a_crash(
        self, registry: ClusterRegistry, cluster_row: ClusterRow
    ) -> None:
        """A platform key rotated without re-sealing: this cluster's health goes down with the reason."""
        elsewhere = SecretBox("another-platform-key", "clusters").seal(b"kubefake-token")
        with pytest.raises(BadCredentials, match="east"):
            await registry.client(cluster_row(sealed=elsewhere))
        assert registry.health["east"].ok is False

    async def test_verify_reports_without_calling(
        self, registry: ClusterRegistry, cluster_row: ClusterRow
    ) -> None:
        elsewhere = SecretBox("another-platform-key", "clusters").seal(b"kubefake-token")
        health = await registry.verify(cluster_row(sealed=elsewhere))
        assert health is not None
        assert health.ok is False
        assert "do not open" in health.detail
