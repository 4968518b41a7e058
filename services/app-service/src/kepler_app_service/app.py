"""app-service: namespaces, apps and (later) releases on Kubernetes."""

from fastapi import FastAPI

from kepler_app_service.api import apps, members, namespaces
from kepler_app_service.service import SERVICE
from kepler_app_service.settings import AppServiceSettings
from kepler_kit.service_app import create_service_app


def create_app(settings: AppServiceSettings | None = None) -> FastAPI:
    return create_service_app(
        service=SERVICE,
        title="Kepler app-service",
        description="Namespaces, apps, releases and their life on Kubernetes.",
        settings=settings or AppServiceSettings(),
        routers=[namespaces, members, apps],
    )
