"""Jobs; `arq <package>.tasks.WorkerSettings` runs them (only the sweeper until the service has jobs)."""

from kepler_kit.contracts import Service
from kepler_kit.worker import worker_settings
from kepler_terminal_service.settings import TerminalServiceSettings

WorkerSettings = worker_settings(Service.TERMINAL.value, TerminalServiceSettings(), [])
