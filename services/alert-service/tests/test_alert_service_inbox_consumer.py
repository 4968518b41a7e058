"""The inbox consumer: who hears of which event (the defaults, the users' follows and mutes), and that a
redelivered or retried batch notifies each user exactly once."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, event, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from kepler_alert_service.inbox.consumer import INBOX, NAME, deliver
from kepler_alert_service.testing import Inbox, World
from kepler_db import InboxRule, Membership, User
from kepler_kit.events import Consumer, StoredEvent, consume_once
from kepler_kit.events.kinds import (
    AlertFiring,
    AnnouncementPublished,
    ApprovalRequested,
    BuildFailed,
    BuildQueued,
    DeploymentFailed,
    DeploymentRequested,
    DeploymentRolledBack,
    DeploymentSucceeded,
    MemberAdded,
    ReleaseCreated,
)

MAINTAINERS = {"owner": "owner", "maintainer": "maintainer"}


def where(world: World, app: str | None = "web", namespace: str = "team-a") -> dict[str, Any]:
    """An event's envelope: in `namespace`, about `app` (none: about the namespace itself)."""
    envelope: dict[str, Any] = {"namespace_id": world.namespaces[namespace].id, "namespace": namespace}
    if app is not None:
        envelope |= {"app_id": world.apps[app].id, "app": app}
    return envelope


def outcome(world: World, app: str = "web") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        **where(world, app),
        "deployment_id": uuid.uuid4(),
        "release": 2,
        "requested_at": now,
        "release_created_at": now,
    }


def requested(world: World, app: str = "web") -> DeploymentRequested:
    return DeploymentRequested(**where(world, app), deployment_id=uuid.uuid4(), release=2, cause="deploy")


async def follow(session: AsyncSession, user: User, pattern: str, **scope: Any) -> None:
    """A rule written as the API writes it (tests of the API check what it lets a user write)."""
    session.add(InboxRule(user_id=user.id, pattern=pattern, **scope))
    await session.flush()


class TestDefaults:
    async def test_a_failed_deploy_reaches_the_namespaces_maintainers_and_owners(
        self, inbox: Inbox, world: World
    ) -> None:
        """Viewers and developers do not answer for the namespace; another namespace's owner and a platform
        admin who is no member hear nothing of it either."""
        event_id = await inbox.publish(DeploymentFailed(**outcome(world)), actor="developer")
        assert await inbox.deliver() == 1
        assert await inbox.recipients(event_id) == MAINTAINERS

    async def test_a_user_is_not_told_of_their_own_success(self, inbox: Inbox, world: World) -> None:
        event_id = await inbox.publish(DeploymentSucceeded(**outcome(world)), actor="maintainer")
        await inbox.deliver()
        assert await inbox.recipients(event_id) == {"owner": "owner"}

    @pytest.mark.parametrize("kind", [DeploymentFailed, DeploymentRolledBack])
    async def test_but_is_told_of_what_went_wrong_after_their_own_action(
        self, inbox: Inbox, world: World, kind: type[DeploymentFailed]
    ) -> None:
        event_id = await inbox.publish(kind(**outcome(world)), actor="maintainer")
        await inbox.deliver()
        assert await inbox.recipients(event_id) == MAINTAINERS

    async def test_build_failures_and_alerts_reach_maintainers(self, inbox: Inbox, world: World) -> None:
        build = BuildFailed(**where(world), build_id=uuid.uuid4(), number=3, commit="abc123")
        built = await inbox.publish(build, actor="maintainer")
        alert = await inbox.publish(AlertFiring(**where(world), alert="HighLatency", fingerprint="f1"))
        await inbox.deliver()
        assert await inbox.recipients(built) == MAINTAINERS
        assert await inbox.recipients(alert) == MAINTAINERS

    @pytest.mark.parametrize("kind", ["requested", "queued", "release", "member"])
    async def test_what_merely_started_reaches_no_one_by_default(
        self, inbox: Inbox, world: World, kind: str
    ) -> None:
        user = world["viewer"]
        events = {
            "requested": requested(world),
            "queued": BuildQueued(**where(world), build_id=uuid.uuid4(), number=1, commit="abc"),
            "release": ReleaseCreated(**where(world), release=2, cause="deploy"),
            "member": MemberAdded(**where(world, None), user_id=user.id, email=user.email, role="viewer"),
        }
        await inbox.publish(events[kind], actor="developer")
        assert await inbox.deliver() == 1
        assert await inbox.count() == 0

    async def test_an_approval_request_reaches_those_who_may_approve_but_not_the_requester(
        self, inbox: Inbox, world: World
    ) -> None:
        approval = ApprovalRequested(**where(world), deployment_id=uuid.uuid4(), release=2)
        event_id = await inbox.publish(approval, actor="maintainer")
        await inbox.deliver()
        assert await inbox.recipients(event_id) == {"owner": "approver"}

    async def test_a_platform_wide_announcement_reaches_every_active_user_but_its_author(
        self, inbox: Inbox, world: World, session: AsyncSession
    ) -> None:
        await session.execute(
            update(User).where(User.id == world["viewer"].id).values(disabled_at=datetime.now(UTC))
        )
        announcement = AnnouncementPublished(
            announcement_id=uuid.uuid4(), title="Maintenance", severity="info"
        )
        event_id = await inbox.publish(announcement, actor="admin")
        await inbox.deliver()
        everyone = {"owner", "maintainer", "developer", "outsider"}
        assert await inbox.recipients(event_id) == dict.fromkeys(everyone, "everyone")

    async def test_a_namespace_announcement_reaches_its_members_only(
        self, inbox: Inbox, world: World
    ) -> None:
        announcement = AnnouncementPublished(
            **where(world, None), announcement_id=uuid.uuid4(), title="Freeze", severity="warning"
        )
        event_id = await inbox.publish(announcement, actor="owner")
        await inbox.deliver()
        assert await inbox.recipients(event_id) == {r: r for r in ("maintainer", "developer", "viewer")}


class TestRules:
    async def test_a_developer_following_one_app_hears_of_its_deploys_only(
        self, inbox: Inbox, world: World, session: AsyncSession
    ) -> None:
        await follow(session, world["developer"], "deployment.*", app_id=world.apps["web"].id)
        web = await inbox.publish(requested(world, "web"), actor="maintainer")
        api = await inbox.publish(requested(world, "api"), actor="maintainer")
        await inbox.deliver()
        assert await inbox.recipients(web) == {"developer": "follow"}
        assert await inbox.recipients(api) == {}

    async def test_a_follow_of_one_kind_matches_that_kind_only(
        self, inbox: Inbox, world: World, session: AsyncSession
    ) -> None:
        await follow(session, world["viewer"], "release.created", namespace_id=world.namespaces["team-a"].id)
        release = await inbox.publish(ReleaseCreated(**where(world), release=2, cause="deploy"))
        deploy = await inbox.publish(requested(world))
        await inbox.deliver()
        assert (await inbox.recipients(release), await inbox.recipients(deploy)) == ({"viewer": "follow"}, {})

    async def test_a_follow_never_reaches_a_namespace_the_user_cannot_see(
        self, inbox: Inbox, world: World, session: AsyncSession
    ) -> None:
        """Checked at delivery: the outsider's rule everywhere, and the viewer's rule for team-a after they
        were removed from it, reach nothing; a platform admin may see every namespace."""
        for name in ("outsider", "viewer", "admin"):
            await follow(session, world[name], "deployment.*")
        await session.execute(delete(Membership).where(Membership.user_id == world["viewer"].id))
        event_id = await inbox.publish(requested(world))
        await inbox.deliver()
        assert await inbox.recipients(event_id) == {"admin": "follow"}

    async def test_a_follow_does_not_tell_users_of_their_own_action(
        self, inbox: Inbox, world: World, session: AsyncSession
    ) -> None:
        await follow(session, world["developer"], "deployment.requested")
        event_id = await inbox.publish(requested(world), actor="developer")
        await inbox.deliver()
        assert await inbox.recipients(event_id) == {}

    async def test_a_mute_overrides_the_defaults(
        self, inbox: Inbox, world: World, session: AsyncSession
    ) -> None:
        await follow(
            session, world["owner"], "deployment.*", namespace_id=world.namespaces["team-a"].id, muted=True
        )
        await follow(
            session, world["maintainer"], "deployment.failed", app_id=world.apps["api"].id, muted=True
        )
        web = await inbox.publish(DeploymentFailed(**outcome(world, "web")))
        api = await inbox.publish(DeploymentFailed(**outcome(world, "api")))
        await inbox.deliver()
        assert await inbox.recipients(web) == {"maintainer": "maintainer"}
        assert await inbox.recipients(api) == {}

    async def test_a_mute_wins_over_a_follow(self, inbox: Inbox, world: World, session: AsyncSession) -> None:
        await follow(session, world["developer"], "deployment.*")
        await follow(session, world["developer"], "deployment.requested", muted=True)
        event_id = await inbox.publish(requested(world))
        await inbox.deliver()
        assert await inbox.recipients(event_id) == {}

    async def test_a_follow_of_what_the_defaults_give_keeps_the_default_reason(
        self, inbox: Inbox, world: World, session: AsyncSession
    ) -> None:
        await follow(session, world["owner"], "deployment.failed")
        event_id = await inbox.publish(DeploymentFailed(**outcome(world)))
        await inbox.deliver()
        assert await inbox.recipients(event_id) == MAINTAINERS


class TestDelivery:
    async def test_a_redelivered_log_adds_nothing(
        self, inbox: Inbox, world: World, session: AsyncSession
    ) -> None:
        """At least once: a cursor moved back (a crash before it was stored) delivers the events again,
        and the (user, event) key keeps one notification each."""
        for _ in range(3):
            await inbox.publish(DeploymentFailed(**outcome(world)))
        assert await inbox.deliver() == 3
        assert await inbox.count() == 6
        await session.execute(
            text("UPDATE event_consumers SET txid = 0, event_id = 0 WHERE name = :n"), {"n": NAME}
        )
        assert await inbox.deliver() >= 3
        assert await inbox.count() == 6

    async def test_a_step_failing_after_its_inserts_leaves_nothing_and_the_retry_delivers_once(
        self, inbox: Inbox, world: World
    ) -> None:
        async def deliver_then_fail(session: AsyncSession, events: Sequence[StoredEvent]) -> None:
            await deliver(session, events)
            raise RuntimeError("the worker died here")

        event_id = await inbox.publish(DeploymentFailed(**outcome(world)))
        crashing = Consumer(NAME, INBOX.patterns, deliver_then_fail, from_now=True)
        with pytest.raises(RuntimeError, match="died"):
            await consume_once(inbox.sessionmaker, crashing)
        assert await inbox.count() == 0
        assert await inbox.deliver() == 1
        assert await inbox.recipients(event_id) == MAINTAINERS

    async def test_a_batch_takes_the_same_few_statements_however_many_events_it_holds(
        self, inbox: Inbox, world: World, engine: AsyncEngine
    ) -> None:
        """Recipients are worked out for the whole batch in one statement, not per event or per user."""
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        async def statements_to_deliver(events: int) -> int:
            for _ in range(events):
                await inbox.publish(DeploymentFailed(**outcome(world)))
            statements.clear()
            event.listen(engine.sync_engine, "before_cursor_execute", count)
            try:
                assert await inbox.deliver() == events
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", count)
            return len(statements)

        assert await statements_to_deliver(2) == await statements_to_deliver(300)
        assert await inbox.count() == 2 * 302
