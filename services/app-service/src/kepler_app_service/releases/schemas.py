"""What the release and deployment endpoints accept and return."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kepler_app_service.apps.schemas import Ports
from kepler_app_service.releases.spec import Argv, Env, ImageRef, Probes, ReleaseSpec, Resources
from kepler_kit.names import AppName
from kepler_kit.pagination import Page
from kepler_kit.scalars import JsonBool, JsonInt

DeploymentState = Literal[
    "pending", "applying", "progressing", "succeeded", "failed", "superseded", "rolled_back", "cancelled"
]


INT32_MAX = 2**31 - 1  # releases are numbered in an `integer` column
ReleaseNumber = Annotated[JsonInt, Field(ge=1, le=INT32_MAX)]
Replicas = Annotated[JsonInt, Field(ge=0, le=500)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentCreate(Strict):
    """Deploy a new image (with optional changes on top of the current release), or an existing release."""

    image: ImageRef | None = None
    image_digest: str | None = Field(None, pattern=r"^sha256:[a-f0-9]{64}$")
    release: ReleaseNumber | None = Field(None, description="Re-deploy this release as it was recorded")
    replicas: Replicas | None = None
    resources: Resources | None = None
    env: Env | None = None
    command: Argv | None = None
    args: Argv | None = None
    ports: Ports | None = None
    probes: Probes | None = None
    progress_deadline_seconds: JsonInt | None = Field(None, ge=10, le=86400)

    @model_validator(mode="after")
    def _one_digest(self) -> "DeploymentCreate":
        """An image pinned by digest (`name@sha256:…`) and another `image_digest`: which one runs?"""
        pinned = self.image.rpartition("@")[2] if self.image and "@" in self.image else None
        if pinned and self.image_digest and pinned != self.image_digest:
            raise ValueError("image_digest differs from the digest the image is pinned to")
        return self


class ReleaseChange(Strict):
    """A day-2 change: becomes a new release, deployed at once, so it is in the history and can be undone."""

    resources: Resources | None = None
    env: Env | None = None
    command: Argv | None = None
    args: Argv | None = None
    probes: Probes | None = None


class RollbackRequest(Strict):
    to_release: ReleaseNumber | None = Field(None, description="Default: the last release that rolled out")


class ScaleRequest(Strict):
    replicas: Replicas


class AppSettingsUpdate(Strict):
    auto_rollback: JsonBool


class Release(BaseModel):
    number: int
    cause: str
    spec: ReleaseSpec
    created_at: datetime
    created_by: uuid.UUID | None


class ReleasePage(Page[Release]):
    pass


class ReleaseDiff(BaseModel):
    from_release: int
    to_release: int
    changes: list[dict[str, Any]] = Field(description="{path, from, to} for every field that differs")


class Deployment(BaseModel):
    id: uuid.UUID
    app: str
    release: int
    status: DeploymentState
    reason: str | None
    message: str | None
    automatic: bool = Field(description="An automatic rollback Kepler started")
    replicas: dict[str, int]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class DeploymentPage(Page[Deployment]):
    pass


class Pod(BaseModel):
    name: str
    phase: str
    ready: bool
    restarts: int
    node: str | None
    release: int | None
    current: bool = Field(description="Belongs to the app's current ReplicaSet")
    containers: list[dict[str, Any]]
    created_at: str | None


class PodPage(Page[Pod]):
    """By name. Read from the cluster per request and paged in memory: an app has few pods."""


class KubeEvent(BaseModel):
    name: str = Field(description="The Event object's name")
    type: str
    reason: str
    message: str
    object: str
    count: int
    last_seen: datetime | None = Field(
        description="series.lastObservedTime, else lastTimestamp, else eventTime (the newest it was seen)"
    )


class KubeEventPage(Page[KubeEvent]):
    """Newest first (by `last_seen`), paged in memory over the namespace's events (the cluster keeps an
    hour of them)."""


class ImportRequest(Strict):
    deployments: list[AppName] | None = Field(None, max_length=500, description="Default: every Deployment")


class Skipped(BaseModel):
    name: str
    reason: str


class ImportResult(BaseModel):
    imported: list[str]
    skipped: list[Skipped]
