"""The declarative registry of kinds the fake serves.

Every verb, discovery document and validator is derived from these declarations, so serving one more kind (a
CRD, a built-in the platform starts to use) is one `ResourceKind(...)` line, not new handler code.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

Obj = dict[str, Any]
"""A Kubernetes object as it travels on the wire: JSON-shaped, never a client model."""

Validation = Literal["schema", "istio", "none"]
T = TypeVar("T")


def clone(value: T) -> T:
    """A deep copy of JSON-shaped data, several times faster than `copy.deepcopy` (no memo, no reducers)."""
    if isinstance(value, dict):
        return cast(T, {k: clone(v) for k, v in value.items()})
    if isinstance(value, list):
        return cast(T, [clone(v) for v in value])
    return value


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """One REST resource: where it lives (group/versions/plural), its scope, and how it is checked."""

    group: str
    versions: tuple[str, ...]
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    validation: Validation = "schema"
    subresources: tuple[str, ...] = ("status",)
    returns_deleted_object: bool = False
    builtin: bool = True
    stored_as: tuple[str, str] | None = None  # (group, Kind) whose objects this resource serves, converted
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )

    @property
    def version(self) -> str:
        """The storage version: objects are kept in it and converted on the way out."""
        return self.versions[0]

    @property
    def api_version(self) -> str:
        return api_version(self.group, self.version)

    @property
    def resource(self) -> str:
        """The `plural.group` name the real server uses in messages (`deployments.apps`)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """The `Kind.group` name used in Invalid messages (`Deployment.apps`)."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


CORE = ""
APPS = "apps"
ISTIO = "networking.istio.io"

DEFAULT_KINDS: tuple[ResourceKind, ...] = (
    ResourceKind(CORE, ("v1",), "Namespace", "namespaces", namespaced=False, short_names=("ns",)),
    ResourceKind(CORE, ("v1",), "Pod", "pods", short_names=("po",), returns_deleted_object=True),
    ResourceKind(CORE, ("v1",), "Service", "services", short_names=("svc",), returns_deleted_object=True),
    ResourceKind(CORE, ("v1",), "ConfigMap", "configmaps", short_names=("cm",), subresources=()),
    ResourceKind(CORE, ("v1",), "Secret", "secrets", subresources=()),
    ResourceKind(CORE, ("v1",), "Event", "events", short_names=("ev",), subresources=()),
    ResourceKind(CORE, ("v1",), "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",)),
    ResourceKind(
        APPS, ("v1",), "Deployment", "deployments", short_names=("deploy",), subresources=("status", "scale")
    ),
    ResourceKind(
        APPS, ("v1",), "ReplicaSet", "replicasets", short_names=("rs",), subresources=("status", "scale")
    ),
    ResourceKind(
        "events.k8s.io",
        ("v1",),
        "Event",
        "events",
        subresources=(),
        validation="none",
        stored_as=("", "Event"),
    ),
    ResourceKind(
        "autoscaling", ("v2",), "HorizontalPodAutoscaler", "horizontalpodautoscalers", short_names=("hpa",)
    ),
    ResourceKind("batch", ("v1",), "Job", "jobs"),
    ResourceKind("batch", ("v1",), "CronJob", "cronjobs", short_names=("cj",)),
    ResourceKind("networking.k8s.io", ("v1",), "Ingress", "ingresses", short_names=("ing",)),
    ResourceKind(
        ISTIO,
        ("v1", "v1beta1"),
        "VirtualService",
        "virtualservices",
        short_names=("vs",),
        validation="istio",
        subresources=(),
        builtin=False,
    ),
    ResourceKind(
        ISTIO,
        ("v1", "v1beta1"),
        "DestinationRule",
        "destinationrules",
        short_names=("dr",),
        validation="istio",
        subresources=(),
        builtin=False,
    ),
)


class Registry:
    """Look-ups from URL parts and from (apiVersion, kind) to a declaration."""

    def __init__(self, kinds: Iterable[ResourceKind] = DEFAULT_KINDS) -> None:
        self._kinds = tuple(kinds)
        self._by_path = {(k.group, v, k.plural): k for k in self._kinds for v in k.versions}
        self._by_kind = {(api_version(k.group, v), k.kind): k for k in self._kinds for v in k.versions}
        self._by_name = {
            name.lower(): k
            for k in self._kinds
            if k.stored_as is None
            for name in (k.kind, k.plural, *k.short_names)
        }
        self._by_group_kind = {(k.group, k.kind): k for k in self._kinds if k.stored_as is None}

    def __iter__(self) -> Iterator[ResourceKind]:
        return iter(self._kinds)

    def by_path(self, group: str, version: str, plural: str) -> ResourceKind | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version_: str, kind: str) -> ResourceKind | None:
        return self._by_kind.get((api_version_, kind))

    def storage(self, kind: ResourceKind) -> ResourceKind:
        """The kind whose objects `kind` serves: itself, or the one it is `stored_as`."""
        return self._by_group_kind[kind.stored_as] if kind.stored_as else kind

    def named(self, name: str) -> ResourceKind:
        """A kind by Kind, plural or short name, case-insensitively: the Python API's convenience."""
        try:
            return self._by_name[name.lower()]
        except KeyError:
            raise KeyError(f"kubefake serves no kind named {name!r}") from None

    def group_versions(self) -> dict[str, list[str]]:
        """Every served group with its versions, storage version first (the preferred one)."""
        groups: dict[str, list[str]] = {}
        for k in self._kinds:
            versions = groups.setdefault(k.group, [])
            versions.extend(v for v in k.versions if v not in versions)
        return groups

    def in_group_version(self, group: str, version: str) -> list[ResourceKind]:
        return [k for k in self._kinds if k.group == group and version in k.versions]
