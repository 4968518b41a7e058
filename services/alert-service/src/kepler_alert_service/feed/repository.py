"""Every query of the feed's list."""

from collections.abc import Sequence

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import PlatformEvent


async def newest_events(
    session: AsyncSession, where: ColumnElement[bool], before: int | None, limit: int
) -> Sequence[PlatformEvent]:
    """Newest first by id, below `before` (a page's cursor). Ids order events by insert, not commit: an
    event may still appear above a page already read, which a list shows on its next first page (the
    stream, which must not miss one, reads the log in commit order instead)."""
    query = select(PlatformEvent).where(where).order_by(PlatformEvent.id.desc()).limit(limit)
    if before is not None:
        query = query.where(PlatformEvent.id < before)
    return (await session.scalars(query)).all()
