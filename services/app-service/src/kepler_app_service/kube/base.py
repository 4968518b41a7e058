"""What app-service knows of Kubernetes without loading kubernetes-asyncio (about 100 MB of models):
the errors, the credentials, the `Kube` protocol and the REST paths. The client itself loads on first use."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from kepler_kit.errors import ServiceUnavailable

Obj = dict[str, Any]
FIELD_MANAGER = "kepler"
APPLY_PATCH = "application/apply-patch+yaml"


class ClusterUnavailable(ServiceUnavailable):
    title = "Cluster unavailable"

    def __init__(self, cluster: str, why: str) -> None:
        super().__init__(f"Cluster '{cluster}' cannot be reached: {why}.", cluster=cluster)
        self.cluster = cluster


class WatchExpired(Exception):
    """The resourceVersion we watched from is gone (410): re-list, then watch from the list's version."""


@dataclass(frozen=True)
class ClusterCredentials:
    name: str
    api_url: str
    token: str | None = None
    ca_data: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    insecure_skip_tls_verify: bool = False


class Kube(Protocol):
    """The few operations app-service performs on a cluster."""

    name: str

    async def apply(self, obj: Obj) -> Obj: ...
    async def apply_scale(self, namespace: str, name: str, replicas: int) -> Obj: ...
    async def get(self, kind: str, namespace: str, name: str) -> Obj | None: ...
    async def list(self, kind: str, namespace: str | None, label_selector: str | None = None) -> Obj: ...
    def watch(
        self,
        kind: str,
        namespace: str | None,
        resource_version: str | None,
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]: ...
    async def delete(self, kind: str, namespace: str, name: str) -> bool: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


_PATHS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Service": ("/api/v1", "services", True),
    "Pod": ("/api/v1", "pods", True),
    "Event": ("/api/v1", "events", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
}


def rest_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    """`namespace=None` on a namespaced kind means across all namespaces (list and watch only)."""
    prefix, plural, namespaced = _PATHS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced and namespace else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path
