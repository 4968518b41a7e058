"""Jobs; `arq <package>.tasks.WorkerSettings` runs them (only the sweeper until the service has jobs)."""

from kepler_alert_service.settings import AlertServiceSettings
from kepler_kit.contracts import Service
from kepler_kit.worker import built_on_first_use, worker_settings


def create_worker_settings() -> type:
    return worker_settings(Service.ALERT.value, AlertServiceSettings(), [])


__getattr__ = built_on_first_use(__name__, create_worker_settings)
