"""`labelSelector` and `fieldSelector` query parameters, parsed once per request and matched per object."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kepler_kubefake.errors import bad_request
from kepler_kubefake.kinds import Obj

_SET_RE = re.compile(r"^\s*(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*(?P<key>[^\s!=]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^\s,]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=()]+)\s*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        return present if self.op == "exists" else not present


Matcher = Callable[[Obj], bool]


def _split(selector: str) -> list[str]:
    """Split on commas outside `in (a,b)` parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Requirement:
    if m := _SET_RE.match(text):
        values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
        return Requirement(m["key"], m["op"], values)
    if m := _EQ_RE.match(text):
        return Requirement(m["key"], "!=" if m["op"] == "!=" else "=", frozenset({m["value"]}))
    if m := _EXISTS_RE.match(text):
        return Requirement(m["key"], "!exists" if m["neg"] else "exists")
    raise bad_request(f"unable to parse requirement: {text.strip()!r}")


def parse_label_selector(selector: str | None) -> list[Requirement]:
    return [_requirement(part) for part in _split(selector or "")]


def labels_match(requirements: list[Requirement], obj: Obj) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def _field_value(obj: Obj, path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def parse_field_selector(selector: str | None) -> list[Requirement]:
    """Any dotted path is accepted (a superset of the real server, which allows a few fields per kind)."""
    requirements = [_requirement(part) for part in _split(selector or "")]
    for r in requirements:
        if r.op not in ("=", "!="):
            raise bad_request(f"invalid selector: {selector!r}; only =, == and != are supported for fields")
    return requirements


def fields_match(requirements: list[Requirement], obj: Obj) -> bool:
    return all((_field_value(obj, r.key) in r.values) == (r.op == "=") for r in requirements)


def matcher(label_selector: str | None, field_selector: str | None) -> Matcher:
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)
    return lambda obj: labels_match(labels, obj) and fields_match(fields, obj)


def match_label_selector(selector: Obj, labels: dict[str, str]) -> bool:
    """A `LabelSelector` object (matchLabels/matchExpressions), as Deployments and ReplicaSets carry."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in selector.get("matchExpressions") or []:
        req = Requirement(expr["key"], ops[expr["operator"]], frozenset(expr.get("values") or ()))
        if not req.matches(labels):
            return False
    return True
