"""Jobs; `arq <package>.tasks.WorkerSettings` runs them (only the sweeper until the service has jobs)."""

from kepler_kit.contracts import Service
from kepler_kit.worker import built_on_first_use, worker_settings
from kepler_terminal_service.settings import TerminalServiceSettings


def create_worker_settings() -> type:
    return worker_settings(Service.TERMINAL.value, TerminalServiceSettings(), [])


__getattr__ = built_on_first_use(__name__, create_worker_settings)
