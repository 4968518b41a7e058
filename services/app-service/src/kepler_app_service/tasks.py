"""app-service jobs. `python -m kepler_kit.worker kepler_app_service.tasks.WorkerSettings` runs them.

`WorkerSettings` is built when the worker asks for it (a module `__getattr__`), never at import: importing
the jobs reads no environment, and the settings are those of the process that starts the worker."""

import asyncio
import uuid
from datetime import timedelta

from kepler_app_service import SERVICE
from kepler_app_service.clusters.clients import cluster_registry, preload_kubernetes_client
from kepler_app_service.context import AppWorker, app_worker, clients_of
from kepler_app_service.live.watch import LiveStatus
from kepler_app_service.members import service  # sync_idp_memberships: the members domain
from kepler_app_service.namespaces import repository as namespaces_repository
from kepler_app_service.namespaces import service as namespaces
from kepler_app_service.releases import repository as releases_repository
from kepler_app_service.releases import service as releases_service
from kepler_app_service.releases.runner import Runner
from kepler_app_service.settings import AppServiceSettings
from kepler_kit.contracts import SyncIdpMemberships, receives
from kepler_kit.jobs import Sweep, WorkerContext, job, session_scope
from kepler_kit.leases import Leases
from kepler_kit.logging import get_logger
from kepler_kit.worker import built_on_first_use, worker_settings

log = get_logger(__name__)


def _settings(ctx: WorkerContext) -> AppServiceSettings:
    settings = ctx.get("settings")
    return settings if isinstance(settings, AppServiceSettings) else AppServiceSettings()


@job
async def provision_namespace(ctx: WorkerContext, namespace_id: str) -> bool:
    """Brings a new namespace to `active`.

    The Kubernetes side (creating the namespace in its bound cluster) arrives with clusters (issue #4);
    this job is where it goes, and the row stays `provisioning` until it has run.
    """
    async with session_scope(ctx) as session:
        changed = await namespaces.mark_namespace_active(session, namespace_id)
    log.info("namespace_provisioned", namespace_id=namespace_id, changed=changed)
    return changed


@receives(SyncIdpMemberships)
async def sync_idp_memberships(ctx: WorkerContext, sync: SyncIdpMemberships) -> int:
    """Enqueued by the gateway after an OIDC login: the user's groups become namespace roles."""
    async with session_scope(ctx) as session:
        changes = await service.sync_idp_memberships(session, sync.user_id, _settings(ctx).idp_group_roles)
    log.info("idp_memberships_synced", user_id=str(sync.user_id), changes=changes)
    return changes


@job
async def run_deployment(ctx: WorkerContext, deployment_id: str, attempt: str) -> str:
    """Apply a release and follow its rollout; `attempt` makes a second run of the same claim a no-op."""
    worker = app_worker(ctx)
    runner = Runner(ctx, worker.clusters, worker.settings)
    outcome = await runner.run(uuid.UUID(deployment_id), int(attempt))
    log.info("deployment_run", deployment_id=deployment_id, attempt=attempt, outcome=outcome)
    return outcome


async def _open_clients(ctx: WorkerContext) -> None:
    """The cluster clients, and the watch that keeps every app's live status in Postgres."""
    await preload_kubernetes_client(ctx["sessionmaker"])
    settings = _settings(ctx)
    registry = cluster_registry(settings)
    leases = Leases(ctx["engine"])  # type: ignore[typeddict-item]  # several workers: one watch per cluster
    status = LiveStatus(ctx["sessionmaker"], registry, settings.default_cluster, leases=leases)
    live = asyncio.create_task(status.run())
    worker = AppWorker(settings=settings, clusters=registry, live_status=live, leases=leases)
    ctx["clients"] = clients_of(worker)


async def _close_clients(ctx: WorkerContext) -> None:
    """The cluster clients are closed however the live-status task ended: awaiting a task that had failed
    re-raises its error, and skipping `close()` then left aiohttp's "Unclosed client session" on stderr."""
    worker = app_worker(ctx)
    try:
        if worker.live_status is not None:
            await _stopped(worker.live_status)
    finally:
        if worker.leases is not None:
            await worker.leases.close()  # the other workers take the clusters over at once
        await worker.clusters.close()


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("live_status_failed")


def sweeps(settings: AppServiceSettings) -> list[Sweep]:
    stale = timedelta(seconds=settings.deploy_stale_seconds)
    return [
        Sweep(namespaces.PROVISION_NAMESPACE, namespaces_repository.provisioning_namespaces),
        Sweep(releases_service.RUN_DEPLOYMENT, releases_repository.stale_deployments, grace=stale),
    ]


FUNCTIONS = [provision_namespace, sync_idp_memberships, run_deployment]


def create_worker_settings() -> type:
    """The arq settings class, with the settings read from the environment now (once per process)."""
    settings = AppServiceSettings()
    return worker_settings(
        SERVICE,
        settings,
        FUNCTIONS,
        sweeps(settings),
        resources=_open_clients,
        release=_close_clients,
        max_jobs=200,
    )


__getattr__ = built_on_first_use(__name__, create_worker_settings)
