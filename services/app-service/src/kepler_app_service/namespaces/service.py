"""Namespace lifecycle. Flushes, never commits: the caller's transaction decides."""

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.access_changes import access_changed
from kepler_app_service.audit import audit
from kepler_app_service.events import about_namespace, emit
from kepler_app_service.namespaces import repository
from kepler_app_service.namespaces.schemas import (
    Namespace,
    NamespaceCluster,
    NamespaceCreate,
    NamespacePage,
    NamespaceUpdate,
)
from kepler_app_service.unique import flush_unique
from kepler_db import models
from kepler_kit import contracts
from kepler_kit.errors import Conflict, NotFound
from kepler_kit.events import kinds
from kepler_kit.identity import Principal
from kepler_kit.jobs import enqueue_after_commit
from kepler_kit.pagination import PageRequest, page_of
from kepler_kube.registry import ClusterRegistry

PROVISION_NAMESPACE = contracts.PROVISION_NAMESPACE


async def get_namespace(session: AsyncSession, name: str) -> models.Namespace:
    namespace = await repository.namespace_by_name(session, name)
    if namespace is None:
        raise NotFound(f"Namespace '{name}' does not exist.")
    return namespace


async def create_namespace(session: AsyncSession, who: Principal, data: NamespaceCreate) -> models.Namespace:
    if await repository.namespace_name_taken(session, data.name):
        raise Conflict(f"Namespace '{data.name}' already exists.")
    cluster_id = await repository.cluster_id(session, data.cluster) if data.cluster else None
    if data.cluster and cluster_id is None:
        raise NotFound(f"No cluster is named '{data.cluster}'.")
    namespace = models.Namespace(
        **data.model_dump(exclude={"cluster"}),
        cluster_id=cluster_id,
        status=models.NamespaceStatus.provisioning,
        created_by=who.user_id,
    )
    session.add(namespace)
    await flush_unique(session, f"Namespace '{data.name}'")
    if who.user_id is not None:
        session.add(models.Membership(user_id=who.user_id, namespace_id=namespace.id, role=models.Role.owner))
        await session.flush()
    enqueue_after_commit(session, PROVISION_NAMESPACE, str(namespace.id))

    audit(session, who, "namespace.create", "namespace", data.name, data.name)
    emit(session, who, kinds.NamespaceCreated(**about_namespace(namespace)))
    return namespace


async def update_namespace(
    session: AsyncSession, who: Principal, name: str, data: NamespaceUpdate
) -> models.Namespace:
    namespace = await get_namespace(session, name)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    for field, value in changes.items():
        setattr(namespace, field, value)
    await session.flush()
    await session.refresh(namespace)
    audit(session, who, "namespace.update", "namespace", name, name, changed=sorted(changes))
    emit(session, who, kinds.NamespaceUpdated(**about_namespace(namespace), changed=sorted(changes)))
    access_changed(session, f"ns:{name}")
    return namespace


async def delete_namespace(session: AsyncSession, who: Principal, name: str) -> None:
    namespace = await get_namespace(session, name)
    if await repository.namespace_has_apps(session, namespace.id):
        raise Conflict(f"Namespace '{name}' still has apps; delete them first.")
    await session.delete(namespace)
    await session.flush()
    audit(session, who, "namespace.delete", "namespace", name, name)
    emit(session, who, kinds.NamespaceDeleted(**about_namespace(namespace)))
    access_changed(session, f"ns:{name}")


async def list_namespaces(session: AsyncSession, who: Principal, page: PageRequest) -> NamespacePage:
    """Admins see every namespace; everyone else only those they are a member of. A token confined to
    one namespace sees that one at most (and not even it once its user is no longer a member)."""
    only = who.token_namespace
    if who.is_admin:
        rows = await repository.list_namespaces(session, page.limit, page.key(str), only)
    elif who.user_id is not None:
        rows = await repository.list_visible_namespaces(session, who.user_id, page.limit, page.key(str), only)
    else:
        rows = []
    return page_of(NamespacePage, rows, page.limit, lambda ns: [ns.name], Namespace.model_validate)


async def mark_namespace_active(session: AsyncSession, namespace_id: str) -> bool:
    """The provisioning job's effect; idempotent, so a re-run after a lost result changes nothing."""
    namespace = await session.get(models.Namespace, namespace_id, with_for_update=True)
    if namespace is None or namespace.status is not models.NamespaceStatus.provisioning:
        return False
    namespace.status = models.NamespaceStatus.active
    await session.flush()
    return True


async def placement(
    session: AsyncSession, registry: ClusterRegistry, namespace: models.Namespace, default: str | None
) -> NamespaceCluster | None:
    """Where the namespace runs and what this process knows of it; None when it is bound to no cluster."""
    cluster = await repository.placed_on(session, namespace, default)
    if cluster is None:
        return None
    health = await registry.verify(cluster)
    return NamespaceCluster(
        name=cluster.name, reachable=health.ok if health else None, detail=health.detail if health else None
    )
