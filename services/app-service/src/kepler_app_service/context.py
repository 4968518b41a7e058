"""What app-service's jobs get from its worker start-up, typed: the kit's `WorkerContext` carries it
under one key of `ctx["clients"]`, and jobs read it through `app_worker(ctx)` only."""

import asyncio
from dataclasses import dataclass

from kepler_app_service import SERVICE
from kepler_app_service.settings import AppServiceSettings
from kepler_kit.jobs import WorkerContext
from kepler_kit.leases import Leases
from kepler_kube.registry import ClusterRegistry

CLIENTS_KEY = SERVICE


@dataclass(kw_only=True)
class AppWorker:
    settings: AppServiceSettings
    clusters: ClusterRegistry
    live_status: asyncio.Task[None] | None = None  # the watch that keeps every app's live status
    leases: Leases | None = None  # one watch per cluster among the workers


def app_worker(ctx: WorkerContext) -> AppWorker:
    """A job started by a worker that did not open the clients is a wiring error, said plainly."""
    found = ctx.get("clients", {}).get(CLIENTS_KEY)
    if not isinstance(found, AppWorker):
        raise RuntimeError("app-service's worker start-up did not run: no cluster clients in the context")
    return found


def clients_of(worker: AppWorker) -> dict[str, AppWorker]:
    """The `ctx["clients"]` value a worker (or a test's burst worker) is given."""
    return {CLIENTS_KEY: worker}
