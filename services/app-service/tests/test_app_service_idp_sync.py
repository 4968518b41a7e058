"""IdP groups become namespace roles at each login; roles given by hand are never touched."""

from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.members.service import desired_roles, sync_idp_memberships
from kepler_app_service.settings import AppServiceSettings
from kepler_db import Membership, Namespace, NamespaceStatus, Role, User
from kepler_kit.events import START, read_after, write_pending
from kepler_kit.jobs import JobRequest, enqueue
from kepler_kit.testing.identities import make_member, make_user

MAPPING = {"payments-devs": "payments:developer", "payments-leads": "payments:owner", "web-all": "web:viewer"}


async def roles_of(session: AsyncSession, user: User) -> dict[str, tuple[Role, str]]:
    query = select(Namespace.name, Membership.role, Membership.source).join(
        Membership, Membership.namespace_id == Namespace.id
    )
    rows = (await session.execute(query.where(Membership.user_id == user.id))).all()
    return {name: (role, source) for name, role, source in rows}


async def world(session: AsyncSession) -> User:
    for name in ("payments", "web", "ops"):
        session.add(Namespace(name=name, status=NamespaceStatus.active))
    await session.flush()
    return await make_user(session, "dev@example.com")


class TestDesiredRoles:
    def test_strongest_role_wins_and_unknown_groups_are_ignored(self) -> None:
        wanted = desired_roles(["payments-devs", "payments-leads", "nobody"], MAPPING)
        assert wanted == {"payments": Role.owner}

    def test_malformed_mapping_entries_are_ignored(self) -> None:
        assert desired_roles(["g"], {"g": "payments:superuser"}) == {}
        assert desired_roles(["g"], {"g": "no-colon"}) == {}


class TestSync:
    async def test_groups_grant_then_revoke(self, session: AsyncSession) -> None:
        user = await world(session)
        user.idp_groups = ["payments-devs", "web-all"]
        assert await sync_idp_memberships(session, user.id, MAPPING) == 2
        assert await roles_of(session, user) == {
            "payments": (Role.developer, "idp"),
            "web": (Role.viewer, "idp"),
        }
        user.idp_groups = ["payments-leads"]
        await sync_idp_memberships(session, user.id, MAPPING)
        assert await roles_of(session, user) == {"payments": (Role.owner, "idp")}
        await write_pending(session)
        told = (await read_after(session, START)).events
        assert [(e.kind, e.namespace, e.data["role"], e.data.get("before"), e.actor) for e in told] == [
            ("member.added", "payments", "developer", None, "kepler"),
            ("member.added", "web", "viewer", None, "kepler"),
            ("member.removed", "web", "viewer", None, "kepler"),
            ("member.changed", "payments", "owner", "developer", "kepler"),
        ]

    async def test_manual_membership_is_left_alone(self, session: AsyncSession) -> None:
        user = await world(session)
        await make_member(session, user, "web", Role.maintainer)
        user.idp_groups = ["web-all"]
        assert await sync_idp_memberships(session, user.id, MAPPING) == 0
        user.idp_groups = []
        await sync_idp_memberships(session, user.id, MAPPING)
        assert await roles_of(session, user) == {"web": (Role.maintainer, "manual")}

    async def test_unknown_namespace_in_mapping_is_skipped(self, session: AsyncSession) -> None:
        user = await world(session)
        user.idp_groups = ["x"]
        assert await sync_idp_memberships(session, user.id, {"x": "missing:viewer"}) == 0

    async def test_runs_as_a_job_with_the_service_mapping(
        self, session: AsyncSession, worker: Any, arq: ArqRedis, queue_name: str
    ) -> None:
        user = await world(session)
        user.idp_groups = ["ops-team"]
        await session.commit()
        worker.settings = AppServiceSettings(idp_group_roles={"ops-team": "ops:maintainer"})
        await enqueue(arq, JobRequest("sync_idp_memberships", (str(user.id),), None), queue_name)
        assert await worker.run() == 1
        assert await roles_of(session, user) == {"ops": (Role.maintainer, "idp")}
