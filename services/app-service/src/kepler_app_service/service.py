"""Namespace and app lifecycle. Flushes, never commits: the caller's transaction decides."""

import uuid
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service import repository
from kepler_app_service.schemas import (
    App,
    AppCreate,
    AppPage,
    AppUpdate,
    Member,
    MemberCreate,
    MemberPage,
    MemberUpdate,
    Namespace,
    NamespaceCreate,
    NamespacePage,
    NamespaceUpdate,
)
from kepler_db import models
from kepler_kit import contracts
from kepler_kit.access import publish_access_change
from kepler_kit.audit import record_audit
from kepler_kit.errors import BadRequest, Conflict, NotFound, ValidationFailed
from kepler_kit.identity import Principal
from kepler_kit.jobs import after_commit, enqueue_after_commit
from kepler_kit.pagination import PageRequest, page_of

SERVICE = contracts.Service.APP.value
PROVISION_NAMESPACE = contracts.PROVISION_NAMESPACE


def _access_changed(session: AsyncSession, *messages: str) -> None:
    async def publish(redis: ArqRedis) -> None:
        await publish_access_change(redis, *messages)

    after_commit(session, publish)


def _audit(
    session: AsyncSession, who: Principal, action: str, kind: str, target: str, ns: str, **detail: Any
) -> None:
    record_audit(
        session,
        who,
        service=SERVICE,
        action=action,
        target_type=kind,
        target=target,
        namespace=ns,
        detail=detail,
    )


async def _flush_unique(session: AsyncSession, what: str) -> None:
    """A concurrent create of the same name loses on the unique constraint: that is a 409, not a 500."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{what} already exists.") from exc


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
    await _flush_unique(session, f"Namespace '{data.name}'")
    if who.user_id is not None:
        session.add(models.Membership(user_id=who.user_id, namespace_id=namespace.id, role=models.Role.owner))
        await session.flush()
    enqueue_after_commit(session, PROVISION_NAMESPACE, str(namespace.id))

    _audit(session, who, "namespace.create", "namespace", data.name, data.name)
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
    _audit(session, who, "namespace.update", "namespace", name, name, changed=sorted(changes))
    _access_changed(session, f"ns:{name}")
    return namespace


async def delete_namespace(session: AsyncSession, who: Principal, name: str) -> None:
    namespace = await get_namespace(session, name)
    if await repository.namespace_has_apps(session, namespace.id):
        raise Conflict(f"Namespace '{name}' still has apps; delete them first.")
    await session.delete(namespace)
    await session.flush()
    _audit(session, who, "namespace.delete", "namespace", name, name)
    _access_changed(session, f"ns:{name}")


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


def app_out(app: models.App, namespace: str) -> App:
    fields = {name: getattr(app, name) for name in App.model_fields if name != "namespace"}
    return App.model_validate({**fields, "namespace": namespace})


async def get_app(session: AsyncSession, namespace: models.Namespace, name: str) -> models.App:
    app = await repository.app_by_name(session, namespace.id, name)
    if app is None:
        raise NotFound(f"App '{name}' does not exist in namespace '{namespace.name}'.")
    return app


async def create_app(
    session: AsyncSession, who: Principal, namespace: models.Namespace, data: AppCreate
) -> models.App:
    if await repository.app_by_name(session, namespace.id, data.name):
        raise Conflict(f"App '{data.name}' already exists in namespace '{namespace.name}'.")
    app = models.App(**data.model_dump(mode="json"), namespace_id=namespace.id, created_by=who.user_id)
    session.add(app)
    await _flush_unique(session, f"App '{data.name}'")
    await session.refresh(app)
    _audit(session, who, "app.create", "app", data.name, namespace.name)
    return app


async def update_app(
    session: AsyncSession, who: Principal, namespace: models.Namespace, name: str, data: AppUpdate
) -> models.App:
    app = await get_app(session, namespace, name)
    changes = data.model_dump(mode="json", exclude_unset=True)
    for field, value in changes.items():
        if value is None and field not in ("language", "git_url"):
            raise BadRequest(f"'{field}' cannot be null.")
        setattr(app, field, value)
    await session.flush()
    await session.refresh(app)
    _audit(session, who, "app.update", "app", name, namespace.name, changed=sorted(changes))
    return app


async def delete_app(
    session: AsyncSession, who: Principal, namespace: models.Namespace, name: str, confirm: str
) -> None:
    app = await get_app(session, namespace, name)
    if confirm != name:
        raise BadRequest("Deleting an app needs `confirm` set to the app's name.")
    await session.delete(app)
    await session.flush()
    _audit(session, who, "app.delete", "app", name, namespace.name)


async def list_apps(session: AsyncSession, namespace: models.Namespace, page: PageRequest) -> AppPage:
    rows = await repository.list_apps(session, namespace.id, page.limit, page.key(str))
    return page_of(
        AppPage, rows, page.limit, lambda app: [app.name], lambda app: app_out(app, namespace.name)
    )


def _member(membership: models.Membership, user: models.User) -> Member:
    return Member(
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=membership.role,
        created_at=membership.created_at,
    )


async def list_members(session: AsyncSession, namespace: models.Namespace, page: PageRequest) -> MemberPage:
    rows = await repository.list_members(session, namespace.id, page.limit, page.key(str))
    return page_of(
        MemberPage, rows, page.limit, lambda row: [row[1].email.lower()], lambda row: _member(*row)
    )


async def add_member(
    session: AsyncSession, who: Principal, namespace: models.Namespace, data: MemberCreate
) -> Member:
    user = await repository.user_by_email(session, data.email)
    if user is None:  # the namespace was found: a 404 would say it was not (RFC 9110: 404 is the target)
        why = "no user has this email; they must sign in to Kepler once first"
        raise ValidationFailed(
            f"body.email: {why}", errors=[{"loc": ["body", "email"], "msg": why, "type": "unknown_user"}]
        )
    if await repository.membership(session, namespace.id, user.id):
        raise Conflict(f"'{user.email}' is already a member of '{namespace.name}'.")
    membership = models.Membership(user_id=user.id, namespace_id=namespace.id, role=data.role)
    session.add(membership)
    await _flush_unique(session, "The membership")
    await session.refresh(membership)
    _audit(session, who, "member.add", "member", user.email, namespace.name, role=data.role.value)
    _access_changed(session, f"user:{user.id}")
    return _member(membership, user)


async def _existing_member(
    session: AsyncSession, namespace: models.Namespace, user_id: uuid.UUID
) -> tuple[models.Membership, models.User]:
    membership = await repository.membership(session, namespace.id, user_id)
    user = await session.get(models.User, user_id)
    if membership is None or user is None:
        raise NotFound(f"That user is not a member of '{namespace.name}'.")
    return membership, user


async def _keep_an_owner(
    session: AsyncSession, namespace: models.Namespace, membership: models.Membership
) -> None:
    if membership.role is models.Role.owner and await repository.owner_count(session, namespace.id) <= 1:
        raise Conflict(f"'{namespace.name}' must keep at least one owner; make someone else owner first.")


async def change_member_role(
    session: AsyncSession, who: Principal, namespace: models.Namespace, user_id: uuid.UUID, data: MemberUpdate
) -> Member:
    membership, user = await _existing_member(session, namespace, user_id)
    if data.role is not models.Role.owner:
        await _keep_an_owner(session, namespace, membership)
    before, membership.role = membership.role, data.role
    await session.flush()
    _audit(
        session,
        who,
        "member.update",
        "member",
        user.email,
        namespace.name,
        before=before.value,
        role=data.role.value,
    )
    _access_changed(session, f"user:{user.id}")
    return _member(membership, user)


async def remove_member(
    session: AsyncSession, who: Principal, namespace: models.Namespace, user_id: uuid.UUID
) -> None:
    membership, user = await _existing_member(session, namespace, user_id)
    await _keep_an_owner(session, namespace, membership)
    await session.delete(membership)
    await session.flush()
    _audit(session, who, "member.remove", "member", user.email, namespace.name)
    _access_changed(session, f"user:{user.id}")


def desired_roles(groups: list[str], mapping: dict[str, str]) -> dict[str, models.Role]:
    """The strongest role each namespace gets from the user's IdP groups."""
    rank = {role: i for i, role in enumerate(models.Role.__members__.values())}  # owner first
    wanted: dict[str, models.Role] = {}
    for group in groups:
        namespace, _, role_name = mapping.get(group, "").partition(":")
        if namespace and role_name in models.Role.__members__:
            role = models.Role(role_name)
            if namespace not in wanted or rank[role] < rank[wanted[namespace]]:
                wanted[namespace] = role
    return wanted


async def sync_idp_memberships(session: AsyncSession, user_id: uuid.UUID, mapping: dict[str, str]) -> int:
    """Make the user's `idp` memberships match their groups; memberships given by hand are left alone."""
    user = await session.get(models.User, user_id)
    if user is None:
        return 0
    wanted = desired_roles([str(g) for g in user.idp_groups], mapping)
    ids = {ns.name: ns.id for ns in await repository.namespaces_named(session, list(wanted))}
    current = {m.namespace_id: m for m in await repository.memberships_of_user(session, user_id)}
    changes = 0
    for membership in current.values():
        if membership.source == "idp" and membership.namespace_id not in {ids.get(n) for n in wanted}:
            await session.delete(membership)
            changes += 1
    for name, role in wanted.items():
        changes += _apply_idp_role(session, user_id, ids.get(name), role, current)
    await session.flush()
    if changes:
        _access_changed(session, f"user:{user_id}")
    return changes


def _apply_idp_role(
    session: AsyncSession,
    user_id: uuid.UUID,
    namespace_id: uuid.UUID | None,
    role: models.Role,
    current: dict[uuid.UUID, models.Membership],
) -> int:
    existing = current.get(namespace_id) if namespace_id else None
    if namespace_id is None or (existing is not None and (existing.source != "idp" or existing.role is role)):
        return 0
    if existing is None:
        session.add(models.Membership(user_id=user_id, namespace_id=namespace_id, role=role, source="idp"))
    else:
        existing.role = role
    return 1
