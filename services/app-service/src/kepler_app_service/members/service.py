"""Namespace membership: members added by hand, and the roles an identity provider's groups give.
Flushes, never commits: the caller's transaction decides."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.access_changes import access_changed
from kepler_app_service.audit import audit
from kepler_app_service.events import about_namespace, emit
from kepler_app_service.members import repository
from kepler_app_service.members.schemas import Member, MemberCreate, MemberPage, MemberUpdate
from kepler_app_service.unique import flush_unique
from kepler_db import models
from kepler_kit.errors import Conflict, NotFound, ValidationFailed
from kepler_kit.events import kinds
from kepler_kit.identity import Principal
from kepler_kit.pagination import PageRequest, page_of


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
    await flush_unique(session, "The membership")
    await session.refresh(membership)
    audit(session, who, "member.add", "member", user.email, namespace.name, role=data.role.value)
    emit(
        session,
        who,
        kinds.MemberAdded(
            **about_namespace(namespace), user_id=user.id, email=user.email, role=data.role.value
        ),
    )
    access_changed(session, f"user:{user.id}")
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
    audit(
        session,
        who,
        "member.update",
        "member",
        user.email,
        namespace.name,
        before=before.value,
        role=data.role.value,
    )
    emit(
        session,
        who,
        kinds.MemberChanged(
            **about_namespace(namespace),
            user_id=user.id,
            email=user.email,
            role=data.role.value,
            before=before.value,
        ),
    )
    access_changed(session, f"user:{user.id}")
    return _member(membership, user)


async def remove_member(
    session: AsyncSession, who: Principal, namespace: models.Namespace, user_id: uuid.UUID
) -> None:
    membership, user = await _existing_member(session, namespace, user_id)
    await _keep_an_owner(session, namespace, membership)
    await session.delete(membership)
    await session.flush()
    audit(session, who, "member.remove", "member", user.email, namespace.name)
    emit(
        session,
        who,
        kinds.MemberRemoved(
            **about_namespace(namespace), user_id=user.id, email=user.email, role=membership.role.value
        ),
    )
    access_changed(session, f"user:{user.id}")


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
    """Make the user's `idp` memberships match their groups; memberships given by hand are left alone.
    Each change is in the platform log as the identity provider's (no actor), like a change by hand."""
    user = await session.get(models.User, user_id)
    if user is None:
        return 0
    wanted = desired_roles([str(g) for g in user.idp_groups], mapping)
    namespaces = {ns.name: ns for ns in await repository.namespaces_named(session, list(wanted))}
    current = {m.namespace_id: m for m in await repository.memberships_of_user(session, user_id)}
    kept = {namespaces[n].id for n in wanted if n in namespaces}
    changes = 0
    for membership in current.values():
        if membership.source == "idp" and membership.namespace_id not in kept:
            await session.delete(membership)
            await _told(session, user, membership.namespace_id, None, membership.role)
            changes += 1
    for name, role in wanted.items():
        namespace = namespaces.get(name)
        had = current.get(namespace.id) if namespace else None
        before = had.role if had else None
        if namespace is not None and _apply_idp_role(session, user_id, namespace.id, role, current):
            await _told(session, user, namespace.id, role, before)
            changes += 1
    await session.flush()
    if changes:
        access_changed(session, f"user:{user_id}")
    return changes


async def _told(
    session: AsyncSession,
    user: models.User,
    namespace_id: uuid.UUID,
    role: models.Role | None,
    before: models.Role | None,
) -> None:
    namespace = await session.get(models.Namespace, namespace_id)
    if namespace is None:
        return
    who = {"user_id": user.id, "email": user.email}
    if role is None:
        gone = before.value if before else None
        emit(session, None, kinds.MemberRemoved(**about_namespace(namespace), **who, role=gone))
    elif before is None:
        emit(session, None, kinds.MemberAdded(**about_namespace(namespace), **who, role=role.value))
    else:
        emit(
            session,
            None,
            kinds.MemberChanged(**about_namespace(namespace), **who, role=role.value, before=before.value),
        )


def _apply_idp_role(
    session: AsyncSession,
    user_id: uuid.UUID,
    namespace_id: uuid.UUID,
    role: models.Role,
    current: dict[uuid.UUID, models.Membership],
) -> bool:
    existing = current.get(namespace_id)
    if existing is not None and (existing.source != "idp" or existing.role is role):
        return False
    if existing is None:
        session.add(models.Membership(user_id=user_id, namespace_id=namespace_id, role=role, source="idp"))
    else:
        existing.role = role
    return True
