"""Discovery documents (`/api`, `/apis`, `/apis/<group>/<version>`, `/version`), all derived from the
registry."""

from kepler_kubefake.kinds import Obj, Registry, ResourceKind, api_version
from kepler_kubefake.schemas import kubernetes_version

_SUBRESOURCE_KINDS = {"scale": ("autoscaling", "v1", "Scale")}


def version_info() -> Obj:
    major, minor, *_ = kubernetes_version().split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{kubernetes_version()}-kubefake",
        "gitCommit": "kubefake",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": api_version(name, v), "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> Obj:
    groups = [_group(name, versions) for name, versions in registry.group_versions().items() if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, name: str) -> Obj | None:
    versions = registry.group_versions().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _resources(kind: ResourceKind) -> list[Obj]:
    main: Obj = {
        "name": kind.plural,
        "singularName": kind.kind.lower(),
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        main["shortNames"] = list(kind.short_names)
    out = [main]
    for sub in kind.subresources:
        entry: Obj = {
            "name": f"{kind.plural}/{sub}",
            "singularName": "",
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": ["get", "patch", "update"],
        }
        if sub in _SUBRESOURCE_KINDS:
            entry["group"], entry["version"], entry["kind"] = _SUBRESOURCE_KINDS[sub]
        out.append(entry)
    return out


def api_resource_list(registry: Registry, group: str, version: str) -> Obj | None:
    kinds = registry.in_group_version(group, version)
    if not kinds:
        return None
    resources = [r for k in kinds for r in _resources(k)]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api_version(group, version),
        "resources": resources,
    }
