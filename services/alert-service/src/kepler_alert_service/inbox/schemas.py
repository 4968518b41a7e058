"""What the inbox endpoints accept and return."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from kepler_kit.events.consumers import expand
from kepler_kit.names import AppName, NamespaceName
from kepler_kit.pagination import Page
from kepler_kit.scalars import JsonBool, JsonInt
from kepler_kit.text import SingleLine

INT64_MAX = 2**63 - 1


def _known_pattern(pattern: str) -> str:
    expand([pattern])  # "no event kind matches …" for a kind or family nobody publishes
    return pattern


Pattern = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    SingleLine,
    AfterValidator(_known_pattern),
    Field(description="An event kind (`deployment.failed`) or a family (`deployment.*`)"),
]


class EventOut(BaseModel):
    """The event a notification tells of, as the activity feed shows it."""

    id: int
    kind: str
    namespace: str | None
    app: str | None
    actor: str = Field(description="Who did it: a user's email, or `kepler` for the platform itself")
    occurred_at: datetime
    data: dict[str, Any] = Field(description="The kind's own fields")


class Notification(BaseModel):
    id: int
    reason: str = Field(
        description="Why it reached you: your role in its namespace (`owner`, `maintainer`…), `approver`, "
        "`everyone` (a platform-wide announcement) or `follow` (one of your rules)"
    )
    created_at: datetime
    read: bool
    read_at: datetime | None
    event: EventOut


class NotificationPage(Page[Notification]):
    pass


class UnreadCount(BaseModel):
    unread: int


class ReadAll(BaseModel):
    model_config = ConfigDict(extra="forbid")
    up_to: Annotated[JsonInt, Field(ge=1, le=INT64_MAX)] | None = Field(
        None,
        description="Only notifications up to this id (the newest the client showed): later ones stay unread",
    )


class Marked(BaseModel):
    marked: int = Field(description="How many notifications this marked read")


class InboxRuleCreate(BaseModel):
    """Without `namespace`, the rule holds in every namespace you can see; `app` needs `namespace`."""

    model_config = ConfigDict(extra="forbid")
    pattern: Pattern
    namespace: NamespaceName | None = None
    app: AppName | None = None
    muted: JsonBool = Field(False, description="true: never deliver these, defaults included")

    @model_validator(mode="after")
    def _app_needs_its_namespace(self) -> Self:
        if self.app is not None and self.namespace is None:
            raise ValueError("an app is named within its namespace: give `namespace` too")
        return self


class InboxRuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    muted: JsonBool


class InboxRule(BaseModel):
    id: uuid.UUID
    pattern: str
    namespace: str | None
    app: str | None
    muted: bool
    created_at: datetime


class InboxRulePage(Page[InboxRule]):
    pass
