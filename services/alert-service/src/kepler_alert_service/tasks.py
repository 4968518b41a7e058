"""Jobs; `arq <package>.tasks.WorkerSettings` runs them, and the worker follows the service's consumers of
the event log (the inbox's). alert-service, the home of the feed, also keeps the log to its retention."""

from datetime import UTC, datetime, timedelta
from typing import cast

from arq.cron import cron
from arq.typing import WorkerCoroutine

from kepler_alert_service.inbox.consumer import INBOX
from kepler_alert_service.settings import AlertServiceSettings
from kepler_kit.contracts import Service
from kepler_kit.events.retention import prune
from kepler_kit.jobs import WorkerContext, job
from kepler_kit.logging import get_logger
from kepler_kit.worker import built_on_first_use, worker_settings

log = get_logger(__name__)
CONSUMERS = (INBOX,)


@job
async def prune_events(ctx: WorkerContext) -> int:
    """Hourly: events older than the retention go (their inbox notifications with them)."""
    settings = ctx.get("settings")
    days = settings.event_retention_days if isinstance(settings, AlertServiceSettings) else 90
    pruned = await prune(ctx["sessionmaker"], datetime.now(UTC) - timedelta(days=days))
    log.info("events_pruned", deleted=pruned.deleted, behind=sorted(pruned.behind))
    return pruned.deleted


def create_worker_settings() -> type:
    hourly = cron(
        cast(WorkerCoroutine, prune_events),
        name="cron:prune-events",
        minute=17,
        second=0,
        unique=True,
        run_at_startup=True,
    )
    settings = AlertServiceSettings()
    return worker_settings(Service.ALERT.value, settings, [], consumers=CONSUMERS, crons=[hourly])


__getattr__ = built_on_first_use(__name__, create_worker_settings)
