"""Strict OpenAPI validation with the schemas `kubernetes-validate` ships, loaded once and cached per kind.

`kubernetes_validate.validate()` re-reads and re-parses the 1.8 MB definitions file on every call (~14 ms per
object); building one `Draft202012Validator` per kind over a shared registry costs ~20 ms once and then ~0.5
ms per Deployment. The Quantity definition is tightened to the grammar the API server parses, because the
published schema accepts any string and a quantity like `500x` must be rejected as the real server rejects it.
"""

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from kepler_kubefake.errors import Cause
from kepler_kubefake.fields import KEY_DEFAULTS, merge_key
from kepler_kubefake.kinds import Obj, ResourceKind

QUANTITY_PATTERN = (
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
QUANTITY_MESSAGE = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_QUANTITY_MARK = "x-kubefake-quantity"


def kubernetes_version() -> str:
    """The newest Kubernetes version whose schemas the installed kubernetes-validate ships (e.g. `1.37.0`)."""
    return str(kv_utils.latest_version())


def _schema_dir() -> Any:
    return (
        resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / f"v{kubernetes_version()}-local-strict"
    )


@cache
def _registry() -> Registry[Any]:
    definitions = json.loads((_schema_dir() / "_definitions.json").read_text())
    definitions["$defs"][_QUANTITY] = {
        "oneOf": [{"type": ["string", "null"], "pattern": QUANTITY_PATTERN}, {"type": ["number", "null"]}],
        _QUANTITY_MARK: True,
    }
    registry: Registry[Any] = Registry().with_resource(
        definitions["$id"], Resource.from_contents(definitions)
    )
    return registry


def _schema_file(kind: ResourceKind) -> str:
    group = kind.group.split(".", 1)[0]
    suffix = f"{group}-{kind.version}" if group else kind.version
    return f"{kind.kind.lower()}-{suffix}.json"


@cache
def validator(kind: ResourceKind) -> Any:
    schema = json.loads((_schema_dir() / _schema_file(kind)).read_text())
    registry = _registry().with_resource(schema["$id"], Resource.from_contents(schema))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def field_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _causes(error: Any) -> list[Cause]:
    path = field_path(error.absolute_path)
    if error.validator == "additionalProperties":
        known = set(error.schema.get("properties") or {})
        extra = sorted(set(error.instance) - known)
        return [
            Cause("FieldValueInvalid", f'unknown field "{_child(path, k)}"', _child(path, k)) for k in extra
        ]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return [Cause("FieldValueRequired", "Required value", _child(path, k)) for k in missing]
    value = json.dumps(error.instance)
    if error.schema.get(_QUANTITY_MARK):
        return [Cause("FieldValueInvalid", f"Invalid value: {value}: {QUANTITY_MESSAGE}", path)]
    if error.validator == "enum":
        supported = ", ".join(json.dumps(v) for v in error.validator_value if v is not None)
        return [
            Cause(
                "FieldValueNotSupported", f"Unsupported value: {value}: supported values: {supported}", path
            )
        ]
    return [Cause("FieldValueInvalid", f"Invalid value: {value}: {error.message}", path)]


def schema_causes(kind: ResourceKind, obj: Obj) -> list[Cause]:
    """Every schema violation as a cause; empty when the object is valid."""
    errors = sorted(validator(kind).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [cause for error in errors for cause in _causes(error)]


def undeclared_fields(kind: ResourceKind, obj: Obj) -> list[str]:
    """Fields the schema does not declare, as structured-merge-diff names them in its errors
    (`.spec.template.spec.containers[name="web"].imagee`): what server-side apply fails on."""
    found = []
    for error in validator(kind).iter_errors(obj):
        if error.validator != "additionalProperties":
            continue
        known = set(error.schema.get("properties") or {})
        for extra in sorted(set(error.instance) - known):
            found.append(_smd_path(obj, [*error.absolute_path, extra]))
    return sorted(found)


def _smd_path(obj: Any, parts: list[Any]) -> str:
    out, node, parent_field = "", obj, None
    for part in parts:
        if isinstance(part, int) and isinstance(node, list):
            key = merge_key(parent_field, node)
            item = node[part]
            values = [f"{k}={json.dumps(item.get(k, KEY_DEFAULTS.get(k)))}" for k in key or ()]
            out += "[" + ",".join(values) + "]" if key else f"[{part}]"
            node = item
        else:
            out += f".{part}"
            parent_field, node = part, node.get(part) if isinstance(node, dict) else None
    return out


def warm(kinds: list[ResourceKind]) -> None:
    """Build validators up front so the first request does not pay for loading the definitions."""
    for kind in kinds:
        validator(kind)
