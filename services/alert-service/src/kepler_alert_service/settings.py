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
