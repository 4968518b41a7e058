"""What a service knows of Kubernetes without loading kubernetes-asyncio (about 100 MB of models):
the errors, the credentials, the `Kube` protocol and the REST paths. The client itself loads on first use."""

import re
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kepler_kit.errors import Conflict, ServiceUnavailable

Obj = dict[str, Any]
FIELD_MANAGER = "kepler"
APPLY_PATCH = "application/apply-patch+yaml"


class ClusterUnavailable(ServiceUnavailable):
    title = "Cluster unavailable"

    def __init__(self, cluster: str, why: str) -> None:
        super().__init__(f"Cluster '{cluster}' cannot be reached: {why}.", cluster=cluster)
        self.cluster = cluster


class BadCredentials(ClusterUnavailable):
    """The stored credentials do not load (a CA or client certificate that is not one, a key that does not
    match): no call can be made until an admin replaces them."""

    title = "Cluster credentials unusable"

    def __init__(self, cluster: str, why: str) -> None:
        super().__init__(cluster, f"bad credentials ({why})")


class NotInCluster(Conflict):
    def __init__(self, cluster: str, kind: str, namespace: str, name: str) -> None:
        super().__init__(
            f"{kind} '{namespace}/{name}' is not in cluster '{cluster}' (deleted outside Kepler?); "
            "deploy to create it again.",
            cluster=cluster,
        )


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


def tls_problems(ca_data: str | None, client_cert: str | None, client_key: str | None) -> dict[str, str]:
    """What kubernetes-asyncio does when it builds a client (`RESTClientObject`: `create_default_context`,
    `load_cert_chain`), done ahead: the field that does not load, and why. Blocking (files, parsing)."""
    problems: dict[str, str] = {}
    if ca_data and (why := _loads_as_certificate(ca_data)):
        problems["ca_data"] = why
    if client_cert and (why := _loads_as_certificate(client_cert)):
        problems["client_cert"] = why
    elif client_cert and client_key and (why := _loads_as_key_pair(client_cert, client_key)):
        problems["client_key"] = why
    return problems


def _loads_as_certificate(pem: str) -> str | None:
    try:
        ssl.create_default_context().load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError, TypeError) as exc:  # TypeError: not ASCII
        return f"does not load as a PEM certificate: {_reason(exc)}"
    return None


def _loads_as_key_pair(cert: str, key: str) -> str | None:
    with tempfile.TemporaryDirectory(prefix="kepler-") as private:  # mode 0700: only we read the key
        cert_file, key_file = Path(private, "cert.pem"), Path(private, "key.pem")
        cert_file.write_text(cert)
        key_file.write_text(key)
        try:  # an encrypted key gets an empty password rather than a terminal prompt
            ssl.create_default_context().load_cert_chain(cert_file, key_file, password=lambda: b"")
        except (ssl.SSLError, ValueError) as exc:
            return f"does not load as the certificate's private key: {_reason(exc)}"
    return None


def _reason(exc: Exception) -> str:
    return re.sub(r"^\[[^]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(exc))


class Kube(Protocol):
    """The few operations Kepler's services perform on a cluster."""

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
