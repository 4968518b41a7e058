"""Validation beyond the OpenAPI schema: the API server's own rules that clients trip over, and Istio's.

The schema says a name is a string; the server says it is an RFC 1123 subdomain. These are the rules a
platform generating manifests can get wrong: names, labels, selector/template agreement, replicas, ports,
immutable selectors. Istio has no schema in kubernetes-validate, so VirtualService/DestinationRule get a
minimal structural check.
"""

import json
import re
from collections.abc import Callable
from typing import Any

from kepler_kubefake.errors import Cause, invalid
from kepler_kubefake.kinds import Obj, ResourceKind
from kepler_kubefake.schemas import schema_causes

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)

PORT_NAME_CHARSET = re.compile(r"^[-a-z0-9]+$")
PORT_NAME_LETTER = re.compile(r"[a-z]")
PERCENT = re.compile(r"^[0-9]+%$")

Check = Callable[[Obj, Obj | None], list[Cause]]


def _bad(field: str, value: Any, message: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {json.dumps(value)}: {message}", field)


def _name_rule(kind: str) -> tuple[re.Pattern[str], str, int]:
    if kind == "Namespace":
        return DNS1123_LABEL, LABEL_MESSAGE, 63
    if kind == "Service":
        return DNS1035_LABEL, DNS1035_MESSAGE, 63
    return DNS1123_SUBDOMAIN, SUBDOMAIN_MESSAGE, 253


def _name(kind: ResourceKind, obj: Obj) -> list[Cause]:
    name = obj.get("metadata", {}).get("name")
    if not name:
        return [
            Cause("FieldValueRequired", "Required value: name or generateName is required", "metadata.name")
        ]
    pattern, message, limit = _name_rule(kind.kind)
    if len(name) > limit:
        return [_bad("metadata.name", name, f"must be no more than {limit} characters")]
    return [] if pattern.match(name) else [_bad("metadata.name", name, message)]


def label_causes(labels: Obj | None, field: str) -> list[Cause]:
    causes = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        key_ok = (
            LABEL_NAME.match(name) and len(name) <= 63 and (not prefix or DNS1123_SUBDOMAIN.match(prefix))
        )
        if not key_ok:
            causes.append(
                _bad(field, key, "name part " + LABEL_VALUE_MESSAGE.replace("an empty string or ", ""))
            )
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            causes.append(_bad(field, value, LABEL_VALUE_MESSAGE))
    return causes


def port_name_problems(name: str) -> list[str]:
    """`IsValidPortName` (apimachinery/pkg/util/validation): an IANA_SVC_NAME, one message per rule broken."""
    problems = []
    if len(name) > 15:
        problems.append("must be no more than 15 characters")
    if not PORT_NAME_CHARSET.match(name):
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not PORT_NAME_LETTER.search(name):
        problems.append("must contain at least one letter (a-z)")
    if "--" in name:
        problems.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        problems.append("must not begin or end with a hyphen")
    return problems


def _port_name(field: str, name: Any) -> list[Cause]:
    return [_bad(field, name, m) for m in port_name_problems(name)] if isinstance(name, str) else []


def _ports(containers: list[Obj], prefix: str) -> list[Cause]:
    causes = []
    for i, c in enumerate(containers):
        if isinstance(c.get("name"), str) and not DNS1123_LABEL.match(c["name"]):
            causes.append(_bad(f"{prefix}[{i}].name", c["name"], LABEL_MESSAGE))
        if not c.get("image"):
            causes.append(Cause("FieldValueRequired", "Required value", f"{prefix}[{i}].image"))
        for j, port in enumerate(c.get("ports") or []):
            causes += _port_name(f"{prefix}[{i}].ports[{j}].name", port.get("name"))
            number = port.get("containerPort")
            if isinstance(number, int) and not 1 <= number <= 65535:
                causes.append(
                    _bad(
                        f"{prefix}[{i}].ports[{j}].containerPort",
                        number,
                        "must be between 1 and 65535, inclusive",
                    )
                )
    return causes


def _pod_template(template: Obj, prefix: str) -> list[Cause]:
    causes = label_causes((template.get("metadata") or {}).get("labels"), f"{prefix}.metadata.labels")
    spec = template.get("spec") or {}
    return causes + _ports(spec.get("containers") or [], f"{prefix}.spec.containers")


def _workload(obj: Obj, old: Obj | None) -> list[Cause]:
    """Deployments and ReplicaSets: the selector must select the template, and cannot change."""
    spec = obj.get("spec") or {}
    causes = _pod_template(spec.get("template") or {}, "spec.template")
    if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
        causes.append(_bad("spec.replicas", spec["replicas"], "must be greater than or equal to 0"))
    selector = spec.get("selector") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        causes.append(_bad("spec.selector", selector, "empty selector is invalid for deployment"))
    elif any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        causes.append(
            _bad("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        )
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        causes.append(_bad("spec.selector", selector, "field is immutable"))
    return causes


def _int_or_percent(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and PERCENT.match(value):
        return int(value[:-1])
    return None


def _strategy(strategy: Obj) -> list[Cause]:
    """`ValidateDeploymentStrategy` / `ValidateRollingUpdateDeployment` (pkg/apis/apps/validation)."""
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type") == "Recreate":
        if rolling is None:
            return []
        message = "Forbidden: may not be specified when strategy `type` is 'Recreate'"
        return [Cause("FieldValueForbidden", message, "spec.strategy.rollingUpdate")]
    if not isinstance(rolling, dict):
        return []
    prefix = "spec.strategy.rollingUpdate"
    causes = []
    for name in ("maxUnavailable", "maxSurge"):
        value = _int_or_percent(rolling.get(name))
        if value is not None and value < 0:
            causes.append(_bad(f"{prefix}.{name}", rolling[name], "must be greater than or equal to 0"))
    unavailable, surge = (
        _int_or_percent(rolling.get("maxUnavailable")),
        _int_or_percent(rolling.get("maxSurge")),
    )
    if unavailable == 0 and surge == 0:
        causes.append(
            _bad(f"{prefix}.maxUnavailable", rolling["maxUnavailable"], "may not be 0 when `maxSurge` is 0")
        )
    raw = rolling.get("maxUnavailable")
    if isinstance(raw, str) and unavailable is not None and unavailable > 100:
        causes.append(_bad(f"{prefix}.maxUnavailable", raw, "must not be greater than 100%"))
    return causes


def _deployment(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = _workload(obj, old)
    spec = obj.get("spec") or {}
    causes += _strategy(spec.get("strategy") or {})
    deadline, min_ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds", 0)
    if isinstance(deadline, int) and isinstance(min_ready, int) and deadline <= min_ready:
        causes.append(_bad("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    return causes


def _pod(obj: Obj, old: Obj | None) -> list[Cause]:
    return _ports((obj.get("spec") or {}).get("containers") or [], "spec.containers")


def _service(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = []
    for i, port in enumerate((obj.get("spec") or {}).get("ports") or []):
        causes += _port_name(f"spec.ports[{i}].targetPort", port.get("targetPort"))
        for name in ("port", "targetPort", "nodePort"):
            value = port.get(name)
            if isinstance(value, int) and not (1 if name != "nodePort" else 0) <= value <= 65535:
                causes.append(
                    _bad(f"spec.ports[{i}].{name}", value, "must be between 1 and 65535, inclusive")
                )
    return causes


def _virtual_service(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = _unknown(spec, {"hosts", "gateways", "http", "tls", "tcp", "exportTo"})
    if not spec.get("hosts"):
        causes.append(
            Cause("FieldValueRequired", "Required value: at least one host is required", "spec.hosts")
        )
    for i, http in enumerate(spec.get("http") or []):
        causes += _routes(http.get("route") or [], f"spec.http[{i}].route")
    return causes


def _routes(routes: list[Obj], prefix: str) -> list[Cause]:
    if not routes:
        return [Cause("FieldValueRequired", "Required value: route is required", prefix)]
    causes = [
        Cause(
            "FieldValueRequired",
            "Required value: destination.host is required",
            f"{prefix}[{i}].destination.host",
        )
        for i, r in enumerate(routes)
        if not (r.get("destination") or {}).get("host")
    ]
    weights = [r.get("weight", 100 if len(routes) == 1 else 0) for r in routes]
    if any(not isinstance(w, int) or w < 0 for w in weights) or sum(weights) != 100:
        causes.append(_bad(prefix, weights, "total destination weight must be 100"))
    return causes


def _destination_rule(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = _unknown(spec, {"host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"})
    if not spec.get("host"):
        causes.append(Cause("FieldValueRequired", "Required value: host is required", "spec.host"))
    names = [s.get("name") for s in spec.get("subsets") or []]
    for i, name in enumerate(names):
        if not name:
            causes.append(
                Cause(
                    "FieldValueRequired", "Required value: subset name is required", f"spec.subsets[{i}].name"
                )
            )
        elif names.index(name) != i:
            causes.append(_bad(f"spec.subsets[{i}].name", name, "duplicate subset name"))
    return causes


def _unknown(spec: Obj, known: set[str]) -> list[Cause]:
    return [
        Cause("FieldValueInvalid", f'unknown field "spec.{k}"', f"spec.{k}")
        for k in sorted(set(spec) - known)
    ]


MAX_DATA_BYTES = 1024 * 1024  # core.MaxSecretSize, for ConfigMaps too
MAX_ANNOTATION_BYTES = 256 * 1024  # TotalAnnotationSizeLimitB


def _too_long(field: str, limit: int) -> Cause:
    return Cause("FieldValueTooLong", f"Too long: must have at most {limit} bytes", field)


def _data_size(obj: Obj) -> int:
    return sum(
        len(str(v)) for name in ("data", "binaryData", "stringData") for v in (obj.get(name) or {}).values()
    )


def _configmap(obj: Obj, old: Obj | None) -> list[Cause]:
    """`ValidateConfigMap`: data and binaryData together at most 1 MiB, reported on the whole object."""
    return [_too_long("[]", MAX_DATA_BYTES)] if _data_size(obj) > MAX_DATA_BYTES else []


def _secret(obj: Obj, old: Obj | None) -> list[Cause]:
    """`ValidateSecret`: data at most 1 MiB."""
    return [_too_long("data", MAX_DATA_BYTES)] if _data_size(obj) > MAX_DATA_BYTES else []


def _annotations(obj: Obj) -> list[Cause]:
    """`ValidateAnnotationsSize` (apimachinery/pkg/api/validation/objectmeta.go): keys and values, 256 KiB."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    size = sum(len(k) + len(str(v)) for k, v in annotations.items())
    return [_too_long("metadata.annotations", MAX_ANNOTATION_BYTES)] if size > MAX_ANNOTATION_BYTES else []


CHECKS: dict[str, Check] = {
    "ConfigMap": _configmap,
    "Secret": _secret,
    "Deployment": _deployment,
    "ReplicaSet": _workload,
    "Pod": _pod,
    "Service": _service,
    "VirtualService": _virtual_service,
    "DestinationRule": _destination_rule,
}


def validate_object(kind: ResourceKind, obj: Obj, old: Obj | None = None) -> None:
    """Raise 422 Invalid listing every cause, like the real server, or return when the object is
    acceptable."""
    causes = _name(kind, obj) + label_causes(obj.get("metadata", {}).get("labels"), "metadata.labels")
    causes += _annotations(obj)
    if kind.validation == "schema":
        causes += schema_causes(kind, obj)
    if check := CHECKS.get(kind.kind):
        causes += check(obj, old)
    if causes:
        raise invalid(kind, obj.get("metadata", {}).get("name", ""), causes)
