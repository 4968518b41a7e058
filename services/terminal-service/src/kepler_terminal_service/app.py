"""terminal-service: Web terminals into pods and live log streams over WebSocket."""

from fastapi import FastAPI

from kepler_kit.contracts import Service
from kepler_kit.service_app import create_service_app
from kepler_terminal_service.settings import TerminalServiceSettings

SERVICE = Service.TERMINAL.value


def create_app(settings: TerminalServiceSettings | None = None) -> FastAPI:
    settings = settings or TerminalServiceSettings()
    return create_service_app(
        service=SERVICE,
        title="Kepler terminal-service",
        description="Web terminals into pods and live log streams over WebSocket.",
        settings=settings,
        routers=[],
        checks=[],
    )
