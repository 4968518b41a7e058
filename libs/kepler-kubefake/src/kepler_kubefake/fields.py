"""Objects as sets of field paths, in the `FieldsV1` vocabulary managedFields uses.

A path is a tuple of FieldsV1 keys: `("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}',
"f:image")`. Lists whose items carry a merge key (containers by name, ports by port…) are associative, as in
the real schemas; every other list is atomic, a single leaf. An associative item also owns its `"."` marker,
so a manager that stops applying an item removes the whole item, defaults included.
"""

import json
from dataclasses import dataclass
from typing import Any

from kepler_kubefake.kinds import Obj

Path = tuple[str, ...]
FlatObject = dict[Path, Any]

ITEM = "."
IDENTITY_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    }
)
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
}


# Key fields the API server defaults before merging, so an item may leave them out (`protocol: TCP`).
KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}


def merge_key(field_name: str | None, items: list[Any], strategic: bool = False) -> tuple[str, ...] | None:
    """The key making a list associative, or None for an atomic list. For server-side apply, ports are
    keyed by number *and* protocol (`x-kubernetes-list-map-keys` of ContainerPort and ServicePort), so 53/UDP
    and 53/TCP are two items; a strategic merge patch (`strategic`) keys them by number alone
    (`patchMergeKey`, the long-standing kubernetes#39188)."""
    if field_name == "ports" and items and isinstance(items[0], dict):
        number = "containerPort" if "containerPort" in items[0] else "port"
        key: tuple[str, ...] | None = (number,) if strategic else (number, "protocol")
    else:
        key = MERGE_KEYS.get(field_name or "")
    if key and all(isinstance(i, dict) and all(k in i or k in KEY_DEFAULTS for k in key) for i in items):
        return key
    return None


def item_key(item: Obj, key: tuple[str, ...]) -> str:
    values = {k: item.get(k, KEY_DEFAULTS.get(k)) for k in key}
    return "k:" + json.dumps(values, separators=(",", ":"), sort_keys=True)


def _flatten_into(value: Any, prefix: Path, field_name: str | None, out: FlatObject) -> None:
    if isinstance(value, dict) and value:
        for name, child in value.items():
            _flatten_into(child, (*prefix, f"f:{name}"), name, out)
    elif isinstance(value, list) and not value and (field_name == "ports" or field_name in MERGE_KEYS):
        return  # an empty associative list owns no item: the items other managers own stay
    elif isinstance(value, list) and value and (key := merge_key(field_name, value)):
        for item in value:
            item_path = (*prefix, item_key(item, key))
            out[(*item_path, ITEM)] = None
            _flatten_into(item, item_path, None, out)
    else:
        out[prefix] = value


def flatten(obj: Obj) -> FlatObject:
    """The user-owned fields of an object: everything but identity metadata and status."""
    out: FlatObject = {}
    for name, value in obj.items():
        if name in ("status", "apiVersion", "kind"):
            continue
        if name == "metadata":
            value = {k: v for k, v in value.items() if k not in IDENTITY_METADATA}
        _flatten_into(value, (f"f:{name}",), name, out)
    return out


@dataclass(frozen=True, slots=True)
class _Leaf:
    value: Any


def _insert(tree: dict[str, Any], path: Path, value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    last = path[-1]
    if not (isinstance(node.get(last), dict) and value == {}):
        node[last] = _Leaf(value)


def _materialize(node: Any) -> Any:
    if isinstance(node, _Leaf):
        return node.value
    items = [(k, v) for k, v in node.items() if k != ITEM]
    if items and all(k.startswith("k:") for k, _ in items):
        return [_materialize(v) for _, v in items]
    return {k.removeprefix("f:"): _materialize(v) for k, v in items}


def unflatten(flat: FlatObject) -> Obj:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        if path[-1] == ITEM:
            tree_path = path[:-1]
            _insert(tree, (*tree_path, ITEM), None)
        else:
            _insert(tree, path, value)
    result = _materialize(tree)
    assert isinstance(result, dict)  # noqa: S101  (the root is a dict; narrows the type)
    return result


def to_fields_v1(paths: set[Path]) -> Obj:
    """The nested FieldsV1 document (`{"f:spec": {"f:replicas": {}}}`) stored in managedFields."""
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(part, {})
    return root


def from_fields_v1(doc: Obj, prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in doc.items():
        path = (*prefix, key)
        if child:
            paths |= from_fields_v1(child, path)
        else:
            paths.add(path)
    return paths


def dotted(path: Path) -> str:
    """A path as the `.spec.template.spec.containers[name="web"].image` text conflict messages use."""
    out = ""
    for part in path:
        if part.startswith("f:"):
            out += "." + part[2:]
        elif part.startswith("k:"):
            keys = json.loads(part[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
    return out


def under(path: Path, prefixes: set[Path]) -> bool:
    return any(path[: len(p)] == p for p in prefixes)
