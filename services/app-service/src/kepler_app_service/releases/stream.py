"""What the deployment event stream (`GET …/deployments/{id}/events`, Server-Sent Events) sends.

Each frame is `id: <n>`, `event: <kind>`, `data: <JSON>`; the JSON of each kind has its own schema
below, and `DeploymentStreamEvent` (one of them, told apart by `event`) is what the OpenAPI document
shows for the `text/event-stream` response, so generated clients get typed events, not `unknown`.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from kepler_app_service.releases.schemas import DeploymentState

EVENT_STREAM = "text/event-stream"


class EventStreamResponse(StreamingResponse):
    """A streaming response documented (and sent) as `text/event-stream`."""

    media_type = EVENT_STREAM


class EventData(BaseModel):
    at: datetime = Field(description="When the event was recorded")


class StatusData(EventData):
    status: DeploymentState
    reason: str | None
    message: str | None
    replicas: dict[str, int]
    release: int | None = Field(None, description="On the first event of a deployment: its release")


class ReplicasData(EventData):
    desired: int
    updated: int
    ready: int
    available: int
    message: str | None = None


class PodSummary(BaseModel):
    name: str
    phase: str = Field(description="Pending, Running, Succeeded, Failed or Unknown")
    ready: bool
    restarts: int
    reason: str | None = Field(None, description="Why a container is waiting (e.g. CrashLoopBackOff)")
    release: int | None = Field(None, description="The release the pod runs, when its template says")


class PodsData(EventData):
    pods: list[PodSummary] = Field(description="Every pod of the app, sent whenever any of them changed")


class AutoRollbackData(EventData):
    to_release: int
    deployment: uuid.UUID = Field(description="The deployment that rolls back")


class RejectionCause(BaseModel):
    field: str | None = Field(description="The object's field the cause names, e.g. `spec.replicas`")
    reason: str | None = Field(description="The cluster's cause, e.g. FieldValueInvalid")
    message: str


class RejectedData(EventData):
    kind: str = Field(description="The kind of the object the cluster refused")
    name: str
    reason: str = Field(description="Invalid, Forbidden, NamespaceTerminating, Conflict...")
    message: str
    causes: list[RejectionCause] = Field(description="What the cluster said of each field")


class StabilisingData(EventData):
    seconds: float = Field(description="How long the new pods must now run without a restart")


class _Frame(BaseModel):
    id: int = Field(description="Send as `Last-Event-ID` to resume after this event")


class StatusEvent(_Frame):
    """The deployment's state changed (the stream ends after a final state)."""

    event: Literal["status"]
    data: StatusData


class ReplicasEvent(_Frame):
    """The rollout's replica counts changed."""

    event: Literal["replicas"]
    data: ReplicasData


class PodsEvent(_Frame):
    """Pods of the app changed (phase, readiness, restarts)."""

    event: Literal["pods"]
    data: PodsData


class AutoRollbackEvent(_Frame):
    """The deployment failed and Kepler started a rollback to the last good release."""

    event: Literal["auto_rollback"]
    data: AutoRollbackData


class RejectedEvent(_Frame):
    """The cluster refused one of the release's objects: the deployment fails (a `status` event follows)."""

    event: Literal["rejected"]
    data: RejectedData


class StabilisingEvent(_Frame):
    """The rollout completed; the deployment succeeds once its new pods have run, without a restart, for
    `seconds` (a pod that restarts or cannot run fails it)."""

    event: Literal["stabilising"]
    data: StabilisingData


DeploymentStreamEvent = Annotated[
    StatusEvent | ReplicasEvent | PodsEvent | AutoRollbackEvent | RejectedEvent | StabilisingEvent,
    Field(discriminator="event"),
]


def stream_response(description: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` entry of an event-stream route (with `response_class=EventStreamResponse`).

    FastAPI documents a text response as `{"type": "string"}` and merges the model's schema into it;
    each event is an object, which the explicit `type` says (a string *and* an object would be none)."""
    content = {EVENT_STREAM: {"schema": {"type": "object"}}}
    return {200: {"model": DeploymentStreamEvent, "description": description, "content": content}}
