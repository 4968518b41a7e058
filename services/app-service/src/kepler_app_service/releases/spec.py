"""A release's spec: everything that defines what runs, validated before anything reaches a cluster."""

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from kepler_app_service.apps.schemas import Port, Ports
from kepler_kit.names import ContainerName
from kepler_kit.scalars import JsonInt
from kepler_kit.text import Line, SingleLine, Text

# distribution/reference grammar: [domain[:port]/]path[:tag][@sha256:digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
)
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?$"
)
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_FACTORS: dict[str, Decimal | int] = {
    "": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10**3, "M": 10**6,
    "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


def _image(value: str) -> str:
    if len(value) > 512 or not IMAGE_REFERENCE.match(value):
        raise ValueError("is not a valid image reference (registry/path[:tag][@sha256:digest])")
    return value


def quantity_value(value: str) -> Decimal:
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"'{value}' is not a Kubernetes quantity (e.g. 500m, 1, 256Mi, 1Gi)")
    number, suffix = Decimal(match[1]), match[2] or ""
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * Decimal(_FACTORS[suffix])


def _quantity(value: str) -> str:
    quantity_value(value)
    return value


ImageRef = Annotated[Line, AfterValidator(_image)]
Quantity = Annotated[Line, StringConstraints(max_length=32), AfterValidator(_quantity)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourceAmounts(Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(Strict):
    requests: ResourceAmounts = ResourceAmounts()
    limits: ResourceAmounts = ResourceAmounts()

    @model_validator(mode="after")
    def _requests_within_limits(self) -> "Resources":
        for name in ("cpu", "memory"):
            request, limit = getattr(self.requests, name), getattr(self.limits, name)
            if request and limit and quantity_value(request) > quantity_value(limit):
                raise ValueError(f"the {name} request is above its limit")
        return self


class EnvVar(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=ENV_NAME)]
    value: Annotated[Text, StringConstraints(max_length=32768)] = ""


class HttpGet(Strict):
    type: Literal["http"] = "http"
    path: Annotated[str, StringConstraints(pattern=r"^/\S*$", max_length=2048), SingleLine] = "/"
    port: JsonInt = Field(ge=1, le=65535)


class TcpSocket(Strict):
    type: Literal["tcp"] = "tcp"
    port: JsonInt = Field(ge=1, le=65535)


class Exec(Strict):
    type: Literal["exec"] = "exec"
    command: list[Annotated[Text, StringConstraints(min_length=1, max_length=4096)]] = Field(min_length=1)


class Probe(Strict):
    check: HttpGet | TcpSocket | Exec = Field(discriminator="type")
    initial_delay_seconds: JsonInt = Field(0, ge=0, le=3600)
    period_seconds: JsonInt = Field(10, ge=1, le=3600)
    timeout_seconds: JsonInt = Field(1, ge=1, le=3600)
    failure_threshold: JsonInt = Field(3, ge=1, le=100)


class Probes(Strict):
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None


def _unique_env(env: list[EnvVar]) -> list[EnvVar]:
    if len({e.name for e in env}) != len(env):
        raise ValueError("environment variable names must be unique")
    return env


Env = Annotated[list[EnvVar], Field(max_length=200), AfterValidator(_unique_env)]
Argv = Annotated[list[Annotated[Text, StringConstraints(max_length=4096)]], Field(max_length=100)]


class ReleaseSpec(Strict):
    """Immutable once recorded: rollback re-applies one of these whole."""

    image: ImageRef
    image_digest: Annotated[str, StringConstraints(pattern=DIGEST.pattern)] | None = None
    replicas: JsonInt = Field(1, ge=0, le=500)
    resources: Resources = Resources()
    env: Env = Field(default_factory=list)
    command: Argv = Field(default_factory=list)
    args: Argv = Field(default_factory=list)
    ports: Ports = Field(default_factory=list)
    container: ContainerName | None = Field(
        None,
        description="The container's name; none: the app's. An adopted Deployment's own, kept by every later "
        "release: server-side apply merges containers by name, so another name would add a second container",
    )
    probes: Probes = Probes()
    progress_deadline_seconds: JsonInt = Field(600, ge=10, le=86400)
    restarted_at: str | None = Field(
        None, description="set by a restart: a new pod template, same everything"
    )
    config_version: int | None = Field(None, description="versioned config (a later capability)")
    secret_version: int | None = Field(None, description="versioned secrets (a later capability)")
    routing_version: int | None = Field(None, description="traffic routing (a later capability)")

    @property
    def image_ref(self) -> str:
        """What the pod runs: pinned to the digest when one is known."""
        if self.image_digest and "@" not in self.image:
            return f"{self.image}@{self.image_digest}"
        return self.image


__all__ = ["Port", "ReleaseSpec"]
