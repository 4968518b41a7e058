"""Kubernetes name rules, as pydantic types, so bad names are 422s with field errors."""

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
RESERVED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


def _not_reserved(name: str) -> str:
    if name in RESERVED_NAMESPACES or name.startswith("kube-"):
        raise ValueError(f"'{name}' is reserved by Kubernetes")
    return name


NamespaceName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=_DNS1123_LABEL), AfterValidator(_not_reserved)
]
# 53, not 63: the app name prefixes generated objects (e.g. `<app>-canary`, ReplicaSet hashes).
AppName = Annotated[str, StringConstraints(min_length=1, max_length=53, pattern=_DNS1035_LABEL)]
# IANA_SVC_NAME, as apimachinery's IsValidPortName checks container port names and a Service's targetPort: at
# most 15 lowercase alphanumerics and '-', at least one letter, no '--', no '-' at either end. One regular
# expression (no lookahead), so the OpenAPI schema states the whole rule: words of digits, then the word
# holding the first letter, then any words, joined by single '-'.
IANA_SVC_NAME = r"^([0-9]+-)*[0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$"
PortName = Annotated[str, StringConstraints(min_length=1, max_length=15, pattern=IANA_SVC_NAME)]
# A container's name: a DNS-1123 label (apimachinery IsDNS1123Label), as pod validation requires.
ContainerName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=_DNS1123_LABEL)]
