"""What the app endpoints accept and return."""

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from kepler_app_service.fields import Description, Strict
from kepler_kit.names import AppName, PortName
from kepler_kit.pagination import Page
from kepler_kit.scalars import JsonInt
from kepler_kit.text import Line

_GIT_URL = re.compile(r"^(https?://[^\s/]+/\S+|ssh://[^\s/]+/\S+|[\w.-]+@[\w.-]+:[\w./~-]+)$")
_REF_FORBIDDEN = re.compile(r"(^[-/.]|\.\.|[\s~^:?*\[\\]|@\{|//|/$|\.lock$|\.$)")


def _git_url(value: str) -> str:
    if not _GIT_URL.match(value):
        raise ValueError("must be an http(s)://, ssh:// or scp-style (git@host:path) repository URL")
    if _credentials_in(value):
        raise ValueError(
            "must not carry credentials (user:password@ or a token@ in an https URL): every viewer of the "
            "namespace reads the URL; give the repository's credentials to the build system instead"
        )
    return value


def _credentials_in(url: str) -> bool:
    """An https URL with any user info, or an ssh URL with a password: `ssh://git@host/…` names the ssh
    user, not a secret, and is how most hosts are reached."""
    if "://" not in url:
        return False  # scp-style git@host:path: a user name only
    parts = urlsplit(url)
    return parts.password is not None or (parts.scheme.startswith("http") and parts.username is not None)


def importable_git_url(value: str | None) -> str | None:
    """A git URL read from a cluster's annotation, kept only when it is one the API would accept."""
    try:
        return _git_url(value) if value else None
    except ValueError:
        return None


def _branch(value: str) -> str:
    if _REF_FORBIDDEN.search(value):
        raise ValueError("is not a valid git branch name")
    return value


def _relative_path(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/") or "\\" in value:
        raise ValueError("must be a path relative to the repository root, without '..'")
    return value


GitUrl = Annotated[Line, StringConstraints(min_length=1, max_length=2048), AfterValidator(_git_url)]
Branch = Annotated[Line, StringConstraints(min_length=1, max_length=255), AfterValidator(_branch)]
RepoPath = Annotated[Line, StringConstraints(min_length=1, max_length=1024), AfterValidator(_relative_path)]
Language = Annotated[
    Line, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9+#._-]*$")
]


class Port(Strict):
    """A container port and the Service port in front of it; they share the name (the targetPort)."""

    name: PortName = Field(
        description="IANA_SVC_NAME: at most 15 lowercase letters, digits and '-', at least one letter, "
        "no '--', no '-' at either end"
    )
    port: JsonInt = Field(ge=1, le=65535, description="The container's port")
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    service_port: JsonInt | None = Field(
        None,
        ge=1,
        le=65535,
        description="The Service's port, when not `port` (an adopted Service keeps its own)",
        exclude_if=lambda value: value is None,
    )

    @property
    def exposed(self) -> int:
        """The port the Service listens on."""
        return self.service_port or self.port


def _unique_ports(ports: list[Port]) -> list[Port]:
    """Server-side apply merges container ports by port and protocol, Service ports by their port and
    protocol: two of a kind would be one list item."""
    if (
        len({p.name for p in ports}) != len(ports)
        or len({(p.port, p.protocol) for p in ports}) != len(ports)
        or len({(p.exposed, p.protocol) for p in ports}) != len(ports)
    ):
        raise ValueError("port names, port/protocol pairs and service_port/protocol pairs must be unique")
    return ports


Ports = Annotated[list[Port], Field(max_length=20), AfterValidator(_unique_ports)]


class AppCreate(Strict):
    name: AppName = Field(description="DNS-1035 label of at most 53 characters")
    description: Description = ""
    git_url: GitUrl | None = Field(
        None, description="Where builds come from; none for an app that only deploys images"
    )
    default_branch: Branch = "main"
    dockerfile_path: RepoPath = "Dockerfile"
    language: Language | None = None
    ports: Ports = Field(default_factory=list)


class AppUpdate(Strict):
    description: Description | None = None
    git_url: GitUrl | None = None
    default_branch: Branch | None = None
    dockerfile_path: RepoPath | None = None
    language: Language | None = None
    ports: Ports | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> "AppUpdate":
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class App(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    namespace: str
    name: str
    description: str
    git_url: str | None
    default_branch: str
    dockerfile_path: str
    language: str | None
    ports: list[Port]
    auto_rollback: bool
    current_release: int | None = Field(description="The release that last rolled out")
    live: "AppLive" = Field(description="From Kepler's watch of the cluster, not fetched per request")
    created_at: datetime
    updated_at: datetime


class AppLive(BaseModel):
    rollout: Literal["complete", "progressing", "failed", "absent"] | None = None
    release: str | None = None
    desired: int | None = None
    ready: int | None = None
    updated: int | None = None
    available: int | None = None
    at: str | None = Field(None, description="When Kepler last saw a change")


class AppPage(Page[App]):
    pass
