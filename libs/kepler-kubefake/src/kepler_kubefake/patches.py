"""PATCH bodies other than apply: JSON merge patch, strategic merge patch and JSON patch.

Strategic merge patch is simplified to a merge patch that merges the lists `fields.MERGE_KEYS` names by their
key (containers and env by name, ports by port…) and replaces every other list; the `$patch`, `$retainKeys`
and `$setElementOrder` directives are not supported. That covers what clients send for scale, restart
annotations and image bumps; anything subtler should use server-side apply.
"""

from typing import Any

from kepler_kubefake.errors import ApiError, bad_request
from kepler_kubefake.fields import item_key, merge_key
from kepler_kubefake.kinds import clone

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_list(field_name: str, target: list[Any], patch: list[Any]) -> list[Any]:
    key = merge_key(field_name, target + patch, strategic=True)
    if key is None:
        return clone(patch)
    merged = {item_key(i, key): i for i in target}
    for item in patch:
        k = item_key(item, key)
        merged[k] = strategic_merge_patch(merged.get(k), item)
    return list(merged.values())


def strategic_merge_patch(target: Any, patch: Any, field_name: str = "") -> Any:
    if isinstance(patch, list) and isinstance(target, list):
        return _merge_list(field_name, target, patch)
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value, key)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, parts[-1]


def _add(doc: Any, parts: list[str], value: Any) -> None:
    parent, last = _parent(doc, parts)
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), clone(value))
    else:
        parent[last] = clone(value)


def _remove(doc: Any, parts: list[str]) -> Any:
    parent, last = _parent(doc, parts)
    return parent.pop(int(last) if isinstance(parent, list) else last)


def _get(doc: Any, parts: list[str]) -> Any:
    parent, last = _parent(doc, parts)
    return parent[int(last)] if isinstance(parent, list) else parent[last]


def _operation(doc: Any, op: dict[str, Any]) -> None:
    parts = _pointer(op.get("path", ""))
    name = op.get("op")
    if name == "add":
        _add(doc, parts, op["value"])
    elif name == "remove":
        _remove(doc, parts)
    elif name == "replace":
        _remove(doc, parts)
        _add(doc, parts, op["value"])
    elif name in ("move", "copy"):
        source = _pointer(op["from"])
        value = _remove(doc, source) if name == "move" else clone(_get(doc, source))
        _add(doc, parts, value)
    elif name == "test":
        if _get(doc, parts) != op["value"]:
            raise ApiError(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request: "
                f"test failed at {op['path']}",
            )
    else:
        raise bad_request(f"unexpected JSON patch operation {name!r}")


def json_patch(target: Any, patch: Any) -> Any:
    """RFC 6902 over a copy; a bad path is the 422 the real server answers."""
    if not isinstance(patch, list):
        raise bad_request("json patch body must be a list of operations")
    doc = clone(target)
    for op in patch:
        try:
            _operation(doc, op)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {exc!r}"
            ) from exc
    return doc
