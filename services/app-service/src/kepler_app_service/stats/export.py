"""DORA's four keys as Prometheus gauges, per app over the last 30 days.

Computed by a background task of the service's lifespan at most once a `interval` (not per scrape: a
scrape must stay cheap however many apps there are), and replaced whole on each refresh so that only apps
with outcomes in the window have series (the cardinality is bounded by what happened, not by the catalog).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.stats import repository, service
from kepler_app_service.stats.repository import AppTally
from kepler_kit.logging import get_logger
from kepler_kit.metrics import REGISTRY

log = get_logger(__name__)
WINDOW = service.DEFAULT_WINDOW
_LABELS = ["namespace", "app"]

DEPLOYMENTS = Gauge(
    "kepler_dora_deployments",
    "Successful deployments in the last 30 days, automatic rollbacks excluded",
    _LABELS,
    registry=REGISTRY,
)
LEAD_TIME = Gauge(
    "kepler_dora_lead_time_seconds",
    "Lead time for changes (commit, else release creation, to deployed) over the last 30 days",
    [*_LABELS, "quantile"],
    registry=REGISTRY,
)
CHANGE_FAILURE = Gauge(
    "kepler_dora_change_failure_ratio",
    "Share of the last 30 days' deployments that failed or were rolled back",
    _LABELS,
    registry=REGISTRY,
)
TIME_TO_RESTORE = Gauge(
    "kepler_dora_time_to_restore_seconds",
    "Median time from a failed deployment to the app's next successful one, over the last 30 days",
    _LABELS,
    registry=REGISTRY,
)
OPEN_FAILURES = Gauge(
    "kepler_dora_open_failures",
    "Failed deployments of the last 30 days not followed by a successful one yet",
    _LABELS,
    registry=REGISTRY,
)
REFRESHED = Gauge(
    "kepler_dora_refreshed_timestamp_seconds",
    "When the kepler_dora_ gauges were last computed (Unix time): an alert can catch a stalled refresh",
    registry=REGISTRY,
)
_ALL = (DEPLOYMENTS, LEAD_TIME, CHANGE_FAILURE, TIME_TO_RESTORE, OPEN_FAILURES)


def publish(tallies: Sequence[AppTally]) -> None:
    """Replaces every series at once (no await in between: a scrape sees the old set or the new one)."""
    for gauge in _ALL:
        gauge.clear()
    for row in tallies:
        _set(row)


def _set(row: AppTally) -> None:
    labels, tally = (row.namespace or "", row.app or ""), row.tally
    DEPLOYMENTS.labels(*labels).set(tally.deployments)
    OPEN_FAILURES.labels(*labels).set(tally.open)
    for quantile, value in (("0.5", tally.lead_median), ("0.9", tally.lead_p90)):
        if value is not None:
            LEAD_TIME.labels(*labels, quantile).set(value)
    if tally.outcomes:
        CHANGE_FAILURE.labels(*labels).set(tally.failures / tally.outcomes)
    if tally.restore_median is not None:
        TIME_TO_RESTORE.labels(*labels).set(tally.restore_median)


async def refresh(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    until = datetime.now(UTC)
    async with sessionmaker() as session:
        _, *apps = await repository.platform_tallies(session, until - WINDOW, until)
    publish(apps)
    REFRESHED.set(until.timestamp())


async def _refreshing(
    sessionmaker: async_sessionmaker[AsyncSession], interval: float, stop: asyncio.Event
) -> None:
    """A failed refresh keeps the last values (and is logged); the next one tries again."""
    while not stop.is_set():
        try:
            await refresh(sessionmaker)
        except Exception as exc:  # a database blip must not end the export for the process's life
            log.warning("dora_refresh_failed", error=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


@contextlib.asynccontextmanager
async def exporting(sessionmaker: async_sessionmaker[AsyncSession], interval: float) -> AsyncIterator[None]:
    """Refreshes the gauges now and every `interval` seconds while open (never when `interval` is 0).
    On exit a refresh under way is let finish (briefly) rather than cancelled mid-query."""
    if not interval:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(_refreshing(sessionmaker, interval, stop))
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
