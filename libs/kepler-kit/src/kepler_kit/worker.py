"""arq WorkerSettings for a service: engine per worker, the sweeper on a cron, sane retention."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from arq.cron import cron
from arq.typing import WorkerCoroutine

from kepler_kit.db import create_engine, create_sessionmaker
from kepler_kit.jobs import Sweep, WorkerContext, redis_settings, service_queue, sweep
from kepler_kit.logging import configure_logging
from kepler_kit.settings import KeplerSettings

SWEEP_SECONDS = {0, 15, 30, 45}


def worker_settings(
    service: str,
    settings: KeplerSettings,
    functions: Sequence[Callable[..., Any]],
    sweeps: Sequence[Sweep] = (),
    queue_name: str | None = None,
    resources: Callable[[WorkerContext], Awaitable[None]] | None = None,
    release: Callable[[WorkerContext], Awaitable[None]] | None = None,
    max_jobs: int = 10,
) -> type:
    """`max_jobs`: jobs that mostly wait on the network (following a rollout) deserve many slots."""
    """Build the class arq's CLI expects (`arq kepler_x.tasks.WorkerSettings`)."""
    queue = settings.queue_name or queue_name or service_queue(service)

    async def on_startup(ctx: WorkerContext) -> None:
        configure_logging(f"{service}-worker", settings.log_level, settings.log_json)
        engine = create_engine(settings.database_url, pool_size=2)
        ctx.update({"service": service, "queue_name": queue, "sweeps": sweeps, "settings": settings})

        ctx["sessionmaker"] = create_sessionmaker(engine)
        ctx["engine"] = engine  # type: ignore[typeddict-unknown-key]
        if resources is not None:
            await resources(ctx)  # the service's integration clients
        await sweep(ctx)

    async def on_shutdown(ctx: WorkerContext) -> None:
        if release is not None:
            await release(ctx)
        await ctx["engine"].dispose()  # type: ignore[typeddict-item]

    attrs: dict[str, Any] = {
        "functions": list(functions),
        # Always registered: arq refuses a worker with nothing to run, and an empty sweep is free.
        "cron_jobs": [
            cron(cast(WorkerCoroutine, sweep), second=SWEEP_SECONDS, run_at_startup=False, unique=True)
        ],
        "queue_name": queue,
        "redis_settings": redis_settings(settings.redis_url),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "keep_result": 30,
        "max_jobs": max_jobs,
        "poll_delay": 0.05,  # arq polls its queue: 0.5 s by default would be most of a deploy's latency
        "health_check_interval": 30,
        "max_tries": 5,
        "job_timeout": 900,
        "handle_signals": True,
    }
    return type("WorkerSettings", (), attrs)
