"""The activity feed: thin endpoints over feed/service.py (the list) and feed/stream.py (live)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import AwareDatetime, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.feed import service
from kepler_alert_service.feed.filters import FeedFilter, feed_filter
from kepler_alert_service.feed.schemas import EventStreamResponse, FeedPage, stream_response
from kepler_alert_service.feed.stream import Follower, Resume
from kepler_alert_service.feed.tail import Tail
from kepler_alert_service.settings import AlertServiceSettings
from kepler_alert_service.visibility import Viewer, check_namespace_filter, visibility_of
from kepler_kit.access import Access, require
from kepler_kit.db import DbSession
from kepler_kit.errors import NAMESPACE_DENIALS, ValidationFailed, error_responses
from kepler_kit.events import head, position_of
from kepler_kit.names import AppName, NamespaceName
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action
from kepler_kit.text import Line

router = APIRouter(prefix="/api/v1/events", tags=["events"])
ERRORS = error_responses(*NAMESPACE_DENIALS, ValidationFailed)
Kind = Annotated[Line, StringConstraints(min_length=1, max_length=64)]
Actor = Annotated[Line, StringConstraints(min_length=1, max_length=254)]
EVENT_ID_MAX = 2**63 - 1


async def _filter(
    request: Request,
    namespace: Annotated[NamespaceName | None, Query(description="Only this namespace's events")] = None,
    app: Annotated[AppName | None, Query(description="Only this app's (needs `namespace`)")] = None,
    kind: Annotated[
        list[Kind],
        Query(
            max_length=50, description="A kind (`deployment.failed`) or a family (`deployment.*`); repeatable"
        ),
    ] = [],  # noqa: B006 (FastAPI copies a default, and a list query parameter needs one)
    actor: Annotated[Actor | None, Query(description="Who caused them (an email; any case)")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Occurred at or after (with a UTC offset)")
    ] = None,
    until: Annotated[AwareDatetime | None, Query(description="Occurred before (with a UTC offset)")] = None,
) -> FeedFilter:
    wanted = feed_filter(namespace, app, kind, actor, since, until)
    if wanted.namespace is not None:
        await check_namespace_filter(request)
    return wanted


Filter = Annotated[FeedFilter, Depends(_filter)]


@router.get(
    "", responses=ERRORS, summary="The activity feed: the platform's events you may see, newest first"
)
async def list_events(
    session: DbSession,
    page: PageParams,
    wanted: Filter,
    access: Access = require(Action.event_view),
) -> FeedPage:
    visibility = await visibility_of(session, access.principal)
    return await service.list_events(session, visibility, wanted, page)


@router.get(
    "/stream",
    response_class=EventStreamResponse,
    responses={**stream_response("Server-Sent Events: one per platform event, `event` its kind"), **ERRORS},
    summary="Follow the activity feed live (Server-Sent Events; resumes after Last-Event-ID)",
)
async def follow_events(
    request: Request,
    session: DbSession,
    wanted: Filter,
    last_event_id: Annotated[
        int | None, Header(ge=1, le=EVENT_ID_MAX, description="Resume after this event (an `id` sent before)")
    ] = None,
    access: Access = require(Action.event_view),
) -> EventStreamResponse:
    """Without `Last-Event-ID`, starts after the newest event. With an id the log no longer keeps (or
    never had), starts there as well, and says so first with a `reset` event rather than an error: an
    `EventSource` cannot read an error's body and stops reconnecting on one; told `reset`, the client
    reloads the list and carries on."""
    settings: AlertServiceSettings = request.state.settings
    tail: Tail = request.state.feed_tail
    first = await visibility_of(session, access.principal)
    viewer = Viewer(tail.reader(visibility_of, access.principal), first, settings.feed_visibility_ttl_seconds)
    resume = await _resume(session, last_event_id)
    follower = Follower(tail, viewer, wanted, settings.feed_keepalive_seconds)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventStreamResponse(follower.frames(resume), headers=headers)


async def _resume(session: AsyncSession, last_event_id: int | None) -> Resume:
    if last_event_id is None:
        return Resume(await head(session))
    found = await position_of(session, last_event_id)
    return Resume(found) if found is not None else Resume(await head(session), reset=True)
