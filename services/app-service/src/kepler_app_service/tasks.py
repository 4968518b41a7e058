"""app-service jobs. `python -m kepler_kit.worker kepler_app_service.tasks.WorkerSettings` runs them."""

import asyncio
import importlib
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service import repository, service
from kepler_app_service.kube.live import LiveStatus
from kepler_app_service.releases import repository as releases_repository
from kepler_app_service.releases import service as releases_service
from kepler_app_service.releases.runner import Runner
from kepler_app_service.settings import AppServiceSettings
from kepler_db import Cluster
from kepler_kit.contracts import SyncIdpMemberships, receives
from kepler_kit.crypto import SecretBox
from kepler_kit.jobs import Sweep, WorkerContext, job, session_scope
from kepler_kit.leases import Leases
from kepler_kit.logging import get_logger
from kepler_kit.worker import worker_settings
from kepler_kube.base import ClusterCredentials, Kube
from kepler_kube.registry import ClusterRegistry

log = get_logger(__name__)
CLUSTER_SECRETS = "cluster-credentials"


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
        changed = await service.mark_namespace_active(session, namespace_id)
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
    runner = Runner(ctx, ctx["clients"]["clusters"], _settings(ctx))
    outcome = await runner.run(uuid.UUID(deployment_id), int(attempt))
    log.info("deployment_run", deployment_id=deployment_id, attempt=attempt, outcome=outcome)
    return outcome


def cluster_registry(settings: AppServiceSettings) -> ClusterRegistry:
    def connect(credentials: ClusterCredentials) -> Kube:
        from kepler_kube.client import KubernetesCluster  # ~100 MB: loaded once a cluster is used

        return KubernetesCluster(credentials, watch_seconds=settings.watch_timeout_seconds)

    return ClusterRegistry(SecretBox(settings.secret_key.get_secret_value(), CLUSTER_SECRETS), connect)


async def preload_kubernetes_client(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """Loads kubernetes-asyncio off the event loop, but only when clusters are registered: without any,
    the process never pays its ~100 MB; with some, the first deploy does not wait for the import."""
    try:
        async with sessionmaker() as session:
            if not await session.scalar(select(func.count()).select_from(Cluster)):
                return False
    except Exception:  # Postgres away at start: load it anyway rather than fail readiness for good
        log.warning("clusters_unknown_loading_kubernetes_client", exc_info=True)
    await asyncio.to_thread(importlib.import_module, "kepler_kube.client")
    return True


async def _open_clients(ctx: WorkerContext) -> None:
    """The cluster clients, and the watch that keeps every app's live status in Postgres."""
    await preload_kubernetes_client(ctx["sessionmaker"])
    settings = _settings(ctx)
    registry = cluster_registry(settings)
    leases = Leases(ctx["engine"])  # type: ignore[typeddict-item]  # several workers: one watch per cluster
    status = LiveStatus(ctx["sessionmaker"], registry, settings.default_cluster, leases=leases)
    ctx["clients"] = {
        "clusters": registry,
        "live_status": asyncio.create_task(status.run()),
        "leases": leases,
    }


async def _close_clients(ctx: WorkerContext) -> None:
    """The cluster clients are closed however the live-status task ended: awaiting a task that had failed
    re-raises its error, and skipping `close()` then left aiohttp's "Unclosed client session" on stderr."""
    live: asyncio.Task[None] = ctx["clients"]["live_status"]
    live.cancel()
    try:
        await live
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("live_status_failed")
    finally:
        await ctx["clients"]["leases"].close()  # the other workers take the clusters over at once
        await ctx["clients"]["clusters"].close()


def sweeps(settings: AppServiceSettings) -> list[Sweep]:
    stale = timedelta(seconds=settings.deploy_stale_seconds)
    return [
        Sweep(service.PROVISION_NAMESPACE, repository.provisioning_namespaces),
        Sweep(releases_service.RUN_DEPLOYMENT, releases_repository.stale_deployments, grace=stale),
    ]


FUNCTIONS = [provision_namespace, sync_idp_memberships, run_deployment]
SETTINGS = AppServiceSettings()
SWEEPS = sweeps(SETTINGS)
WorkerSettings = worker_settings(
    service.SERVICE,
    SETTINGS,
    FUNCTIONS,
    SWEEPS,
    resources=_open_clients,
    release=_close_clients,
    max_jobs=200,
)
