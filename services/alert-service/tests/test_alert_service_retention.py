"""alert-service keeps the platform event log to its retention (90 days unless configured), hourly."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_alert_service.settings import AlertServiceSettings
from kepler_alert_service.tasks import create_worker_settings, prune_events
from kepler_db import PlatformEvent
from kepler_kit.events import publish, write_pending
from kepler_kit.events.kinds import AppCreated
from kepler_kit.jobs import WorkerContext


async def test_the_hourly_job_deletes_what_is_past_retention(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], settings_overrides: dict[str, Any]
) -> None:
    for age in (91, 89):
        publish(session, AppCreated(namespace="team-a", app=f"app-{age}"), service="test")
        await write_pending(session)
        old = datetime.now(UTC) - timedelta(days=age)
        await session.execute(
            update(PlatformEvent).where(PlatformEvent.app == f"app-{age}").values(occurred_at=old)
        )
    ctx: WorkerContext = {
        "sessionmaker": sessionmaker,
        "settings": AlertServiceSettings(**settings_overrides),
    }
    assert await prune_events(ctx) == 1
    assert await session.scalar(select(func.count()).select_from(PlatformEvent)) == 1


def test_the_worker_runs_it_hourly() -> None:
    crons = {c.name: c for c in create_worker_settings().cron_jobs}  # type: ignore[attr-defined]
    assert crons["cron:prune-events"].minute == 17
