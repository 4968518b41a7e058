"""What the stats endpoints return: DORA's four keys over a window, each with its DORA performance band."""

import enum
from datetime import datetime

from pydantic import BaseModel, Field


class Band(enum.StrEnum):
    """The DORA 2023 report's performance levels (see `service.BANDS` for the thresholds used)."""

    elite = "elite"
    high = "high"
    medium = "medium"
    low = "low"


class DeploymentFrequency(BaseModel):
    count: int = Field(description="Successful deployments, automatic rollbacks excluded")
    per_day: float = Field(description="`count` over the window's length in days")
    band: Band


class LeadTime(BaseModel):
    """Deployed (the success) minus the commit's time for a built release, else the release's creation.
    Rollbacks to an older release are deployments but not changes: they have no lead time."""

    median_seconds: float | None
    p90_seconds: float | None
    mean_seconds: float | None
    from_commit: int = Field(description="Deployments measured from their commit's time")
    from_release: int = Field(
        description="Deployments measured from their release's creation (no commit time)"
    )
    band: Band | None = Field(description="From the median; none without deployments")


class ChangeFailureRate(BaseModel):
    ratio: float | None = Field(description="`failed` / `deployments`; none without deployments")
    failed: int = Field(description="Deployments that failed or were rolled back")
    deployments: int = Field(description="Deployments that reached an outcome, automatic rollbacks excluded")
    band: Band | None


class TimeToRestore(BaseModel):
    """From a failed (or rolled back) deployment to the app's next successful one, an automatic rollback's
    included; only restores before the window's end count."""

    median_seconds: float | None
    mean_seconds: float | None
    restored: int = Field(description="Failures followed by a success before the window's end")
    open: int = Field(description="Failures not followed by a success yet (by the window's end)")
    band: Band | None = Field(description="From the median; none while nothing was restored")


class DeliveryMetrics(BaseModel):
    deployment_frequency: DeploymentFrequency
    lead_time: LeadTime
    change_failure_rate: ChangeFailureRate
    time_to_restore: TimeToRestore


class StatsWindow(BaseModel):
    since: datetime = Field(description="Start of the window (included)")
    until: datetime = Field(description="End of the window (excluded)")
    days: float = Field(description="The window's length in days")


class AppStats(DeliveryMetrics):
    namespace: str
    app: str
    window: StatsWindow


class AppBreakdown(DeliveryMetrics):
    app: str
    deleted: bool = Field(description="The app has since been deleted (its history still counts)")


class NamespaceStats(DeliveryMetrics):
    """The namespace's keys (its apps' deployments pooled), and each app's with outcomes in the window."""

    namespace: str
    window: StatsWindow
    apps: list[AppBreakdown]
