"""What the announcement endpoints accept and return."""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from kepler_db import Severity
from kepler_kit.pagination import Page
from kepler_kit.text import Multiline, SingleLine


def _in_the_future(moment: datetime) -> datetime:
    if moment <= datetime.now(UTC):
        raise ValueError("must be in the future: an announcement that has already expired tells no one")
    return moment


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), SingleLine]
Body = Annotated[str, StringConstraints(max_length=10_000), Multiline]


class AnnouncementCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    body: Body = ""
    severity: Severity
    expires_at: Annotated[AwareDatetime, AfterValidator(_in_the_future)] | None = Field(
        None, description="When it stops being shown; none: until withdrawn"
    )


class Announcement(BaseModel):
    id: uuid.UUID
    namespace: str | None = Field(description="None: platform-wide")
    title: str
    body: str
    severity: Severity
    expires_at: datetime | None
    created_at: datetime
    author: str | None = Field(description="Who published it (their email), if they still have an account")


class AnnouncementPage(Page[Announcement]):
    pass
