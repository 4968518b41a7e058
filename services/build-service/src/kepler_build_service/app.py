"""build-service: Builds on Jenkins: jobs, triggers, console logs, build history."""

from fastapi import FastAPI

from kepler_build_service.settings import BuildServiceSettings
from kepler_kit.contracts import Service
from kepler_kit.health import configured_url_check
from kepler_kit.service_app import create_service_app

SERVICE = Service.BUILD.value


def create_app(settings: BuildServiceSettings | None = None) -> FastAPI:
    settings = settings or BuildServiceSettings()
    return create_service_app(
        service=SERVICE,
        title="Kepler build-service",
        description="Builds on Jenkins: jobs, triggers, console logs, build history.",
        settings=settings,
        routers=[],
        checks=[configured_url_check("jenkins", settings.jenkins_url, "builds")],
    )
