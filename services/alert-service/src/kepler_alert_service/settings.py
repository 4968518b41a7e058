from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kepler_kit.settings import KeplerSettings


class AlertServiceSettings(KeplerSettings):
    model_config = SettingsConfigDict(
        env_prefix="KEPLER_ALERT_SERVICE_", extra="ignore", populate_by_name=True
    )

    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    event_retention_days: int = Field(90, ge=1, description="How long the platform event log keeps events")

    # The activity feed's tail (feed/tail.py): woken by LISTEN/NOTIFY, and reading regardless this often.
    feed_poll_seconds: float = Field(2.0, gt=0, le=60)
    # Events a live follower may have waiting before it is disconnected (it resumes with Last-Event-ID).
    feed_follower_queue: int = Field(1000, ge=1, le=100_000)
    feed_keepalive_seconds: float = Field(15.0, gt=0, le=300)
    # How long a live follower's namespaces are trusted before they are read again (member.* events about
    # the follower refresh them at once).
    feed_visibility_ttl_seconds: float = Field(15.0, gt=0, le=30)
