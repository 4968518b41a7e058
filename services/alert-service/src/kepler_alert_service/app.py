"""alert-service: Prometheus rules, Alertmanager intake, silences and notification channels."""

from fastapi import FastAPI

from kepler_alert_service.announcements.api import router as announcements
from kepler_alert_service.feed.api import router as feed
from kepler_alert_service.feed.tail import tail_lifespan
from kepler_alert_service.inbox.api import router as inbox
from kepler_alert_service.settings import AlertServiceSettings
from kepler_kit.contracts import Service
from kepler_kit.health import configured_url_check
from kepler_kit.service_app import create_service_app

SERVICE = Service.ALERT.value
# What the service serves (besides health and status); tests walk their request bodies.
ROUTERS = (feed, inbox, announcements)


def create_app(settings: AlertServiceSettings | None = None) -> FastAPI:
    settings = settings or AlertServiceSettings()
    return create_service_app(
        service=SERVICE,
        title="Kepler alert-service",
        description="Prometheus rules, Alertmanager intake, silences and notification channels.",
        settings=settings,
        routers=ROUTERS,
        checks=[
            configured_url_check("prometheus", settings.prometheus_url, "metrics and alert rules"),
            configured_url_check("alertmanager", settings.alertmanager_url, "silences"),
        ],
        extra_lifespan=tail_lifespan(settings),
    )
