"""Jobs; `arq <package>.tasks.WorkerSettings` runs them (only the sweeper until the service has jobs)."""

from kepler_build_service.settings import BuildServiceSettings
from kepler_kit.contracts import Service
from kepler_kit.worker import built_on_first_use, worker_settings


def create_worker_settings() -> type:
    return worker_settings(Service.BUILD.value, BuildServiceSettings(), [])


__getattr__ = built_on_first_use(__name__, create_worker_settings)
