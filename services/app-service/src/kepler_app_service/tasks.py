"""app-service jobs. `arq kepler_app_service.tasks.WorkerSettings` runs them."""

import uuid

from kepler_app_service import repository, service
from kepler_app_service.settings import AppServiceSettings
from kepler_kit.jobs import Sweep, WorkerContext, job, session_scope
from kepler_kit.logging import get_logger
from kepler_kit.worker import worker_settings

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
        changed = await service.mark_namespace_active(session, namespace_id)
    log.info("namespace_provisioned", namespace_id=namespace_id, changed=changed)
    return changed


@job
async def sync_idp_memberships(ctx: WorkerContext, user_id: str) -> int:
    """Enqueued by the gateway after an OIDC login: the user's groups become namespace roles."""
    async with session_scope(ctx) as session:
        changes = await service.sync_idp_memberships(
            session, uuid.UUID(user_id), _settings(ctx).idp_group_roles
        )
    log.info("idp_memberships_synced", user_id=user_id, changes=changes)
    return changes


FUNCTIONS = [provision_namespace, sync_idp_memberships]
SWEEPS = [Sweep(service.PROVISION_NAMESPACE, repository.provisioning_namespaces)]
WorkerSettings = worker_settings(service.SERVICE, AppServiceSettings(), FUNCTIONS, SWEEPS)
