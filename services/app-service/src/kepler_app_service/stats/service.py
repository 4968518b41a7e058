"""DORA's four keys from the event log's tallies, and the window a request asks about.

The DORA 2023 report describes its performance levels by cluster (elite deploys "on demand", restores in
"less than one hour", …); `BANDS` turns those descriptions into upper bounds, the way a team reads them.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.stats import repository
from kepler_app_service.stats.repository import AppTally, Tally
from kepler_app_service.stats.schemas import (
    AppBreakdown,
    AppStats,
    Band,
    ChangeFailureRate,
    DeliveryMetrics,
    DeploymentFrequency,
    LeadTime,
    NamespaceStats,
    StatsWindow,
    TimeToRestore,
)
from kepler_db import models
from kepler_kit.errors import ValidationFailed

DEFAULT_WINDOW = timedelta(days=30)
LONGEST_WINDOW = timedelta(days=366)
HOUR, DAY = 3600.0, 86400.0
# Per key, the bound a value must be within for elite, high, medium (else low). Frequency is per day
# and the more the better; the others are the less the better.
BANDS: dict[str, tuple[float, float, float]] = {
    "deployment_frequency": (1.0, 1 / 7, 1 / 30),  # on demand (daily or more), weekly, monthly
    "lead_time": (DAY, 7 * DAY, 30 * DAY),  # under a day, a week, a month
    "change_failure_rate": (0.05, 0.10, 0.15),  # the 2023 clusters' 5 %, 10 %, 15 %
    "time_to_restore": (HOUR, DAY, 7 * DAY),  # under an hour, a day, a week
}
_LEVELS = (Band.elite, Band.high, Band.medium)


def _band(key: str, value: float | None, better: Callable[[float, float], bool]) -> Band | None:
    if value is None:
        return None
    bounds = BANDS[key]
    return next(
        (level for level, bound in zip(_LEVELS, bounds, strict=True) if better(value, bound)), Band.low
    )


def _at_least(value: float, bound: float) -> bool:
    return value >= bound


def _within(value: float, bound: float) -> bool:
    return value <= bound


def _below(value: float, bound: float) -> bool:
    return value < bound


def _invalid(loc: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"query.{loc}: {message}", errors=[{"loc": ["query", loc], "msg": message, "type": "value_error"}]
    )


def window_of(length: timedelta | None, since: datetime | None, until: datetime | None) -> StatsWindow:
    """[since, until): `until` defaults to now and `since` to `until` minus `window` (30 days)."""
    if length is not None and since is not None:
        raise _invalid("since", "give either `window` or `since`, not both")
    end = _utc(until, "until") if until else datetime.now(UTC)
    start = _utc(since, "since") if since else _before(end, length or DEFAULT_WINDOW)
    if start >= end:
        raise _invalid("since", "must be before `until`")
    if end - start > LONGEST_WINDOW:
        raise _invalid("since", f"the window may be at most {LONGEST_WINDOW.days} days long")
    return StatsWindow(since=start, until=end, days=(end - start) / timedelta(days=1))


def _utc(moment: datetime, loc: str) -> datetime:
    """A moment at the edge of the calendar (`0001-01-01T00:00+01:00`) has no UTC time: a 422."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise _invalid(loc, "is outside the range of dates") from None


def _before(end: datetime, length: timedelta) -> datetime:
    try:
        return end - length
    except OverflowError:
        raise _invalid("until", "is too early to have a window before it") from None


def keys(tally: Tally, days: float) -> DeliveryMetrics:
    return DeliveryMetrics(
        deployment_frequency=_frequency(tally, days),
        lead_time=_lead_time(tally),
        change_failure_rate=_failure_rate(tally),
        time_to_restore=_restore(tally),
    )


def _frequency(tally: Tally, days: float) -> DeploymentFrequency:
    per_day = tally.deployments / days
    band = _band("deployment_frequency", per_day, _at_least)
    return DeploymentFrequency(count=tally.deployments, per_day=per_day, band=band or Band.low)


def _lead_time(tally: Tally) -> LeadTime:
    return LeadTime(
        median_seconds=tally.lead_median,
        p90_seconds=tally.lead_p90,
        mean_seconds=tally.lead_mean,
        from_commit=tally.from_commit,
        from_release=tally.from_release,
        band=_band("lead_time", tally.lead_median, _below),
    )


def _failure_rate(tally: Tally) -> ChangeFailureRate:
    ratio = tally.failures / tally.outcomes if tally.outcomes else None
    band = _band("change_failure_rate", ratio, _within)
    return ChangeFailureRate(ratio=ratio, failed=tally.failures, deployments=tally.outcomes, band=band)


def _restore(tally: Tally) -> TimeToRestore:
    return TimeToRestore(
        median_seconds=tally.restore_median,
        mean_seconds=tally.restore_mean,
        restored=tally.restored,
        open=tally.open,
        band=_band("time_to_restore", tally.restore_median, _below),
    )


async def app_stats(
    session: AsyncSession, namespace: models.Namespace, app: models.App, window: StatsWindow
) -> AppStats:
    metrics = keys(await repository.app_tally(session, app.id, window.since, window.until), window.days)
    return AppStats(namespace=namespace.name, app=app.name, window=window, **dict(metrics))


async def namespace_stats(
    session: AsyncSession, namespace: models.Namespace, window: StatsWindow
) -> NamespaceStats:
    total, *apps = await repository.namespace_tallies(session, namespace.id, window.since, window.until)
    breakdown = [_breakdown(row, window.days) for row in apps]
    metrics = keys(total.tally, window.days)
    return NamespaceStats(namespace=namespace.name, window=window, apps=breakdown, **dict(metrics))


def _breakdown(row: AppTally, days: float) -> AppBreakdown:
    return AppBreakdown(app=row.app or "", deleted=row.deleted, **dict(keys(row.tally, days)))
