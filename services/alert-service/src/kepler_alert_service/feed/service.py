"""The feed's list: the caller's filter and visibility as one query, newest first, a page at a time."""

from sqlalchemy import and_
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.feed import repository
from kepler_alert_service.feed.filters import FeedFilter
from kepler_alert_service.feed.schemas import FeedEvent, FeedPage
from kepler_alert_service.visibility import Visibility
from kepler_db import PlatformEvent
from kepler_kit.pagination import Int64, PageRequest, page_of


async def list_events(
    session: AsyncSession, visibility: Visibility, wanted: FeedFilter, page: PageRequest
) -> FeedPage:
    key = page.key(Int64)
    where = and_(visibility.clause(), wanted.clause())
    rows = list(await repository.newest_events(session, where, key[0] if key else None, page.limit + 1))
    return page_of(FeedPage, rows, page.limit, lambda row: [row.id], _item)


def _item(row: PlatformEvent) -> FeedEvent:
    return FeedEvent(
        id=row.id,
        kind=row.kind,
        version=row.version,
        occurred_at=row.occurred_at,
        service=row.service,
        namespace=row.namespace,
        namespace_id=row.namespace_id,
        app=row.app,
        app_id=row.app_id,
        actor=row.actor,
        correlation_id=row.correlation_id,
        data=row.data,
    )
