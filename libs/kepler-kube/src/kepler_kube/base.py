"""What a service knows of Kubernetes without loading kubernetes-asyncio (about 100 MB of models):
the errors, the credentials, the `Kube` protocol and the REST paths. The client itself loads on first use."""

import re
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kepler_kit.errors import Conflict, KeplerError, ServiceUnavailable

Obj = dict[str, Any]
FIELD_MANAGER = "kepler"
APPLY_PATCH = "application/apply-patch+yaml"


class ClusterUnavailable(ServiceUnavailable):
    title = "Cluster unavailable"

    def __init__(self, cluster: str, why: str, retry_after: float | None = None) -> None:
        seconds = str(max(1, round(retry_after))) if retry_after is not None else "5"
        super().__init__(
            f"Cluster '{cluster}' cannot be reached: {why}.",
            cluster=cluster,
            headers={"Retry-After": seconds},
        )
        self.cluster, self.retry_after = cluster, retry_after


class BadCredentials(ClusterUnavailable):
    """The stored credentials do not load (a CA or client certificate that is not one, a key that does not
    match): no call can be made until an admin replaces them."""

    title = "Cluster credentials unusable"

    def __init__(self, cluster: str, why: str) -> None:
        super().__init__(cluster, f"bad credentials ({why})")


class CredentialsRefused(ClusterUnavailable):
    """401: the API server does not accept Kepler's credentials (a revoked or expired token): no call
    succeeds until an admin replaces them."""

    title = "Cluster credentials refused"

    def __init__(self, cluster: str, why: str) -> None:
        super().__init__(cluster, f"credentials refused ({why})")


class NotInCluster(Conflict):
    def __init__(self, cluster: str, kind: str, namespace: str, name: str) -> None:
        super().__init__(
            f"{kind} '{namespace}/{name}' is not in cluster '{cluster}' (deleted outside Kepler?); "
            "deploy to create it again.",
            cluster=cluster,
        )


class WatchExpired(Exception):
    """The resourceVersion we watched from is gone (410, as an HTTP status or an ERROR event), or is newer
    than a lagging API server has seen (504 `ResourceVersionTooLarge`): re-list, then watch from the
    *list's* resourceVersion, never from one object's."""


@dataclass(frozen=True)
class Cause:
    """One `details.causes[]` entry of a Kubernetes Status: `field` is the object path it names."""

    reason: str | None
    message: str
    field: str | None


class KubeError(KeplerError):
    """The API server answered a request with an error Status (`kind: Status, status: Failure`) that Kepler
    cannot retry away. `code` is the HTTP status the cluster answered, `reason` the Status reason
    (`Invalid`, `Forbidden`, `AlreadyExists`...), `causes` its field causes. Rendered as a 502 unless a
    subclass knows better: the cluster refused what Kepler asked, which is not the caller's request."""

    status, code, title = 502, "cluster-refused", "Cluster refused the request"

    def __init__(
        self, cluster: str, answered: int, reason: str, message: str, causes: tuple[Cause, ...] = ()
    ) -> None:
        super().__init__(
            f"Cluster '{cluster}' answered {answered} {reason}: {message}",
            cluster=cluster,
            cluster_reason=reason,
        )
        self.cluster, self.answered, self.reason, self.message = cluster, answered, reason, message
        self.causes = causes


class KubeNotFound(KubeError):
    """404: the object (or its namespace) does not exist."""

    status, code, title = 404, "not-found", "Not found"


class KubeConflict(KubeError):
    """409: `Conflict` (a stale resourceVersion, a field another manager owns) or `AlreadyExists`."""

    status, code, title = 409, "conflict", "Conflict"


class KubeInvalid(KubeError):
    """422 `Invalid` (or 400/413: a request the API server will never take): the object breaks the
    cluster's validation; `causes` name the fields."""

    status, code, title = 422, "cluster-rejected", "Cluster rejected the object"


class KubeForbidden(KubeError):
    """403: Kepler's credentials may not do this (RBAC, admission: a 502, the platform's to mend), or the
    namespace is being deleted (`terminating`: a 409, the state of the namespace)."""

    def __init__(
        self, cluster: str, answered: int, reason: str, message: str, causes: tuple[Cause, ...] = ()
    ) -> None:
        super().__init__(cluster, answered, reason, message, causes)
        if self.terminating:
            self.status, self.code, self.title = 409, "namespace-terminating", "Namespace is being deleted"

    @property
    def terminating(self) -> bool:
        return any(cause.reason == "NamespaceTerminating" for cause in self.causes)


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
    async def list(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Obj: ...
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
