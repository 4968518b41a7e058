"""What the feed returns: one `FeedEvent` per platform event, in a list page or as an SSE frame's data."""

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, JsonValue

from kepler_kit.events import KINDS, StoredEvent
from kepler_kit.pagination import Page

EVENT_STREAM = "text/event-stream"
RESET = "reset"  # the SSE event that says the stream restarted from now (see `ResetData`)


class FeedEvent(BaseModel):
    id: int = Field(description="The event's id; as `Last-Event-ID`, resumes the stream after it")
    kind: str = Field(description="What happened, e.g. `deployment.succeeded` (family `deployment`)")
    version: int = Field(description="The schema version of `data` for this kind")
    occurred_at: datetime
    service: str = Field(description="The service that published it")
    namespace: str | None = Field(description="Null for a platform-wide event (an announcement)")
    namespace_id: uuid.UUID | None
    app: str | None
    app_id: uuid.UUID | None
    actor: str = Field(description="Who asked for it (an email), or `kepler` when the platform acted alone")
    correlation_id: str | None = Field(description="The request id of the request that caused it")
    data: dict[str, Any] = Field(
        description="The kind's own fields: the schema of each kind (and version) is the platform event "
        "contract (kepler_kit.events.kinds), e.g. `release` and `deployment_id` of `deployment.*`",
        json_schema_extra={"x-kepler-kinds": list[JsonValue](sorted(KINDS))},
    )


class FeedPage(Page[FeedEvent]):
    pass


def feed_event(event: StoredEvent) -> FeedEvent:
    return FeedEvent(
        id=event.id,
        kind=event.kind,
        version=event.version,
        occurred_at=event.occurred_at,
        service=event.service,
        namespace=event.namespace,
        namespace_id=event.namespace_id,
        app=event.app,
        app_id=event.app_id,
        actor=event.actor,
        correlation_id=event.correlation_id,
        data=event.data,
    )


# --- the event stream, as the OpenAPI document shows it ---------------------------------------------------


class EventStreamResponse(StreamingResponse):
    """A streaming response documented (and sent) as `text/event-stream`."""

    media_type = EVENT_STREAM


class EventFrame(BaseModel):
    """A platform event: `event` is its kind, `data` the same object as a list item."""

    id: int = Field(description="Send as `Last-Event-ID` to resume after this event")
    event: str = Field(description="The event's kind")
    data: FeedEvent


class ResetData(BaseModel):
    reason: str = Field(description="Why: the `Last-Event-ID` is not an event the log still keeps")


class ResetFrame(BaseModel):
    """Sent first when the `Last-Event-ID` names no event still kept (pruned, or never one): the stream
    starts from now, so events may have been missed; a client reloads the list to catch up. Its `id` (the
    newest event's, or empty) is where the next reconnect resumes."""

    id: int | None
    event: Literal["reset"]
    data: ResetData


def stream_response(description: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` entry of the stream (FastAPI would document a text response as a string)."""
    content = {EVENT_STREAM: {"schema": {"type": "object"}}}
    return {200: {"model": EventFrame | ResetFrame, "description": description, "content": content}}
