"""Jobs; `arq <package>.tasks.WorkerSettings` runs them, and the worker follows the service's consumers of
the event log (the inbox's)."""

from kepler_alert_service.inbox.consumer import INBOX
from kepler_alert_service.settings import AlertServiceSettings
from kepler_kit.contracts import Service
from kepler_kit.worker import built_on_first_use, worker_settings

CONSUMERS = (INBOX,)


def create_worker_settings() -> type:
    return worker_settings(Service.ALERT.value, AlertServiceSettings(), [], consumers=CONSUMERS)


__getattr__ = built_on_first_use(__name__, create_worker_settings)
