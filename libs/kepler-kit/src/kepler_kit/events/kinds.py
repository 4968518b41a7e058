"""Every kind of platform event, as a typed model: the contract between the service that publishes it and
every service (and client) that reads it. One class per kind; `KINDS` finds a kind's class by name.

An event names what it is about with the envelope fields (`namespace_id`/`namespace`, `app_id`/`app`), which
are columns of the log (the feed filters on them); the other fields are the kind's own, stored as `data`.

Changing a kind: adding an optional field keeps its `version`; anything else (removing, renaming, changing a
field's meaning) is a new version, and readers of stored events must keep reading the old one.
"""

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

ENVELOPE = frozenset({"namespace_id", "namespace", "app_id", "app"})


class Event(BaseModel):
    """A fact the platform records: the same transaction that changed things publishes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: ClassVar[str]
    version: ClassVar[int] = 1
    family: ClassVar[str] = ""  # the kind's family (`deployment`), derived from the kind

    namespace_id: uuid.UUID | None = None
    namespace: str | None = None
    app_id: uuid.UUID | None = None
    app: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            cls.family = cls.kind.partition(".")[0]

    def data(self) -> dict[str, Any]:
        """The kind's own fields, as stored (JSON types)."""
        return self.model_dump(mode="json", exclude=set(ENVELOPE))


# --- deployments -------------------------------------------------------------------------------------------


class DeploymentEvent(Event):
    deployment_id: uuid.UUID
    release: int = Field(description="The release number the deployment runs")
    automatic: bool = Field(False, description="An automatic rollback, not asked for by a person")


class DeploymentRequested(DeploymentEvent):
    kind = "deployment.requested"
    cause: str = Field(description="What the release is, e.g. `deploy`, `rollback to 3`")
    awaiting_approval: bool = False


class DeploymentApproved(DeploymentEvent):
    kind = "deployment.approved"


class DeploymentOutcome(DeploymentEvent):
    """A final state. Carries the times delivery metrics need, so they are computed from the log alone."""

    requested_at: datetime
    release_created_at: datetime
    committed_at: datetime | None = Field(None, description="The source commit's time, for a built release")
    rollback: bool = Field(
        False, description="It ran a release older than the app's newest: a rollback, not a new change"
    )
    reason: str | None = None
    message: str | None = None


class DeploymentSucceeded(DeploymentOutcome):
    kind = "deployment.succeeded"


class DeploymentFailed(DeploymentOutcome):
    kind = "deployment.failed"


class DeploymentRolledBack(DeploymentOutcome):
    """It failed, and Kepler rolled the app back (to `to_release`, when known)."""

    kind = "deployment.rolled_back"
    to_release: int | None = None


class DeploymentSuperseded(DeploymentEvent):
    kind = "deployment.superseded"


class DeploymentCancelled(DeploymentEvent):
    kind = "deployment.cancelled"


class ApprovalRequested(DeploymentEvent):
    """A deployment waits for a maintainer or owner of its namespace to approve it."""

    kind = "approval.requested"


# --- releases and apps -------------------------------------------------------------------------------------


class ReleaseCreated(Event):
    kind = "release.created"
    release: int
    cause: str
    image: str | None = None
    commit: str | None = Field(None, description="The source commit, for a built release")
    committed_at: datetime | None = None


class AppCreated(Event):
    kind = "app.created"


class AppUpdated(Event):
    kind = "app.updated"
    changed: list[str] = Field(description="The settings that changed")


class AppDeleted(Event):
    kind = "app.deleted"


class AppScaled(Event):
    kind = "app.scaled"
    replicas: int
    before: int | None


class AppRestarted(Event):
    kind = "app.restarted"


# --- namespaces and members --------------------------------------------------------------------------------


class NamespaceCreated(Event):
    kind = "namespace.created"


class NamespaceUpdated(Event):
    kind = "namespace.updated"
    changed: list[str]


class NamespaceDeleted(Event):
    kind = "namespace.deleted"


class MemberEvent(Event):
    user_id: uuid.UUID
    email: str
    role: Literal["owner", "maintainer", "developer", "viewer"] | None


class MemberAdded(MemberEvent):
    kind = "member.added"


class MemberChanged(MemberEvent):
    kind = "member.changed"
    before: Literal["owner", "maintainer", "developer", "viewer"] | None


class MemberRemoved(MemberEvent):
    kind = "member.removed"


# --- builds (published by build-service) -------------------------------------------------------------------


class BuildEvent(Event):
    build_id: uuid.UUID
    number: int
    commit: str
    branch: str | None = None


class BuildQueued(BuildEvent):
    kind = "build.queued"


class BuildStarted(BuildEvent):
    kind = "build.started"


class BuildSucceeded(BuildEvent):
    kind = "build.succeeded"
    image: str
    committed_at: datetime | None = None


class BuildFailed(BuildEvent):
    kind = "build.failed"
    reason: str | None = None


# --- alerts and announcements (published by alert-service) -------------------------------------------------


class AlertEvent(Event):
    alert: str = Field(description="The alert's name")
    fingerprint: str
    severity: str | None = None
    summary: str | None = None


class AlertFiring(AlertEvent):
    kind = "alert.firing"


class AlertResolved(AlertEvent):
    kind = "alert.resolved"


class AnnouncementPublished(Event):
    """Platform-wide when it names no namespace."""

    kind = "announcement.published"
    announcement_id: uuid.UUID
    title: str
    severity: Literal["info", "warning", "critical"]
    expires_at: datetime | None = None


def _kinds() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    pending: list[type[Event]] = [Event]
    while pending:
        for cls in pending.pop().__subclasses__():
            pending.append(cls)
            if "kind" in cls.__dict__:
                found[cls.kind] = cls
    return found


KINDS: dict[str, type[Event]] = _kinds()
FAMILIES: frozenset[str] = frozenset(kind.partition(".")[0] for kind in KINDS)
