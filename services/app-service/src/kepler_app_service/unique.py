"""Names unique per scope (namespaces, apps in a namespace, memberships): the constraint has the last word."""

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_kit.errors import Conflict


async def flush_unique(session: AsyncSession, what: str) -> None:
    """A concurrent create of the same name loses on the unique constraint: that is a 409, not a 500."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{what} already exists.") from exc
