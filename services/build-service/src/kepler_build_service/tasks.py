"""Jobs; `arq <package>.tasks.WorkerSettings` runs them (only the sweeper until the service has jobs)."""

from kepler_build_service.settings import BuildServiceSettings
from kepler_kit.contracts import Service
from kepler_kit.worker import worker_settings

WorkerSettings = worker_settings(Service.BUILD.value, BuildServiceSettings(), [])
