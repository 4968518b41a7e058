"""The inbox as its user sees it: their notifications newest first, unread counts, marking read, and
their rules; never another user's."""

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.app import ROUTERS
from kepler_alert_service.inbox.rules import MAX_RULES
from kepler_alert_service.testing import Identities, Inbox, World
from kepler_db import AuditEvent, InboxRule, Membership, Namespace, TokenScope
from kepler_kit.events.kinds import DeploymentFailed
from kepler_kit.testing.hostile import CRAFTED_CURSORS, NOT_BOOLEANS, NOT_INTEGERS, lax_scalars

PROBLEM = "application/problem+json"
INBOX = "/api/v1/inbox"
RULES = f"{INBOX}/rules"


def failed(world: World, app: str = "web") -> DeploymentFailed:
    now = datetime.now(UTC)
    return DeploymentFailed(
        namespace_id=world.namespaces["team-a"].id,
        namespace="team-a",
        app_id=world.apps[app].id,
        app=app,
        deployment_id=uuid.uuid4(),
        release=4,
        requested_at=now,
        release_created_at=now,
        reason="ProgressDeadlineExceeded",
    )


async def notify(inbox: Inbox, world: World, count: int) -> None:
    """`count` failed deploys of `web`, delivered to team-a's owner and maintainer."""
    for _ in range(count):
        await inbox.publish(failed(world), actor="developer")
    await inbox.deliver()


def assert_problem(response: httpx.Response, status: int) -> None:
    assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM), response.text


async def unread(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get(f"{INBOX}/unread-count", headers=headers)
    assert response.status_code == 200, response.text
    count: int = response.json()["unread"]
    return count


class TestListing:
    async def test_newest_first_with_the_event_and_why(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities
    ) -> None:
        await inbox.publish(failed(world, "api"), actor="developer")
        await notify(inbox, world, 1)
        response = await client.get(INBOX, headers=as_("maintainer"))
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [item["event"]["app"] for item in items] == ["web", "api"]
        first = items[0]
        assert (first["reason"], first["read"], first["read_at"]) == ("maintainer", False, None)
        event = first["event"]
        assert (event["kind"], event["namespace"], event["actor"]) == (
            "deployment.failed",
            "team-a",
            "developer@example.com",
        )
        assert event["data"]["reason"] == "ProgressDeadlineExceeded"
        assert event["occurred_at"]

    async def test_pages_follow_each_other_without_repeats(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities
    ) -> None:
        await notify(inbox, world, 5)
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await client.get(INBOX, params=params, headers=as_("owner"))).json()
            seen += [item["id"] for item in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert len(seen) == 5
        assert seen == sorted(seen, reverse=True)

    async def test_unread_filters_out_what_was_read(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities
    ) -> None:
        await notify(inbox, world, 3)
        items = (await client.get(INBOX, headers=as_("owner"))).json()["items"]
        await client.post(f"{INBOX}/{items[1]['id']}/read", headers=as_("owner"))
        left = (await client.get(INBOX, params={"unread": "true"}, headers=as_("owner"))).json()["items"]
        assert [item["id"] for item in left] == [items[0]["id"], items[2]["id"]]

    async def test_a_user_sees_only_their_own(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities
    ) -> None:
        await notify(inbox, world, 2)
        assert (await client.get(INBOX, headers=as_("viewer"))).json()["items"] == []
        assert await unread(client, as_("viewer")) == 0
        assert await unread(client, as_("owner")) == 2

    async def test_leaving_a_namespace_takes_its_notifications_out_of_sight(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities, session: AsyncSession
    ) -> None:
        """As the feed would no longer show them: what the user was told while a member stays unreadable."""
        await notify(inbox, world, 2)
        kept = (await client.get(INBOX, headers=as_("maintainer"))).json()["items"][0]["id"]
        await session.execute(delete(Membership).where(Membership.user_id == world["maintainer"].id))
        assert (await client.get(INBOX, headers=as_("maintainer"))).json()["items"] == []
        assert await unread(client, as_("maintainer")) == 0
        assert_problem(await client.post(f"{INBOX}/{kept}/read", headers=as_("maintainer")), 404)
        assert (await client.post(f"{INBOX}/read-all", headers=as_("maintainer"))).json() == {"marked": 0}


class TestMarking:
    async def test_read_and_unread_move_the_count(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities
    ) -> None:
        await notify(inbox, world, 2)
        newest = (await client.get(INBOX, headers=as_("owner"))).json()["items"][0]["id"]
        read = await client.post(f"{INBOX}/{newest}/read", headers=as_("owner"))
        assert read.status_code == 200, read.text
        assert read.json()["read"] is True
        assert await unread(client, as_("owner")) == 1
        again = await client.post(f"{INBOX}/{newest}/read", headers=as_("owner"))
        assert again.json()["read_at"] == read.json()["read_at"]  # the first time it was read stays
        back = await client.post(f"{INBOX}/{newest}/unread", headers=as_("owner"))
        assert (back.json()["read"], back.json()["read_at"]) == (False, None)
        assert await unread(client, as_("owner")) == 2

    async def test_read_all_and_read_all_up_to_an_id(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities
    ) -> None:
        """A client marks read what it has shown: what arrived since stays unread."""
        await notify(inbox, world, 3)
        ids = [item["id"] for item in (await client.get(INBOX, headers=as_("owner"))).json()["items"]]
        up_to = await client.post(f"{INBOX}/read-all", json={"up_to": ids[1]}, headers=as_("owner"))
        assert up_to.json() == {"marked": 2}
        assert await unread(client, as_("owner")) == 1
        everything = await client.post(f"{INBOX}/read-all", headers=as_("owner"))
        assert everything.json() == {"marked": 1}
        assert await unread(client, as_("owner")) == 0
        assert await unread(client, as_("maintainer")) == 3  # each user's own

    @pytest.mark.parametrize("action", ["read", "unread"])
    async def test_another_users_notification_is_not_found(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities, action: str
    ) -> None:
        await notify(inbox, world, 1)
        theirs = (await client.get(INBOX, headers=as_("owner"))).json()["items"][0]["id"]
        assert_problem(await client.post(f"{INBOX}/{theirs}/{action}", headers=as_("maintainer")), 404)
        assert_problem(await client.post(f"{INBOX}/{theirs}/{action}", headers=as_("outsider")), 404)
        assert await unread(client, as_("owner")) == 1


class TestWhoMayCall:
    async def test_anonymous_callers_are_401(self, client: httpx.AsyncClient, world: World) -> None:
        for response in (await client.get(INBOX), await client.post(f"{INBOX}/read-all")):
            assert_problem(response, 401)

    async def test_a_read_token_reads_but_does_not_mark(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities
    ) -> None:
        await notify(inbox, world, 1)
        token = as_("owner", scope=TokenScope.read)
        items = (await client.get(INBOX, headers=token)).json()["items"]
        assert_problem(await client.post(f"{INBOX}/{items[0]['id']}/read", headers=token), 403)
        assert_problem(await client.post(f"{INBOX}/read-all", headers=token), 403)
        write = as_("owner", scope=TokenScope.write)
        assert (await client.post(f"{INBOX}/read-all", headers=write)).status_code == 200

    async def test_a_token_confined_to_one_namespace_cannot_read_an_inbox_spanning_them(
        self, client: httpx.AsyncClient, as_: Identities
    ) -> None:
        assert_problem(await client.get(INBOX, headers=as_("owner", namespace="team-a")), 403)


class TestRules:
    async def test_create_list_get_mute_delete(
        self, client: httpx.AsyncClient, as_: Identities, session: AsyncSession
    ) -> None:
        body = {"pattern": "deployment.*", "namespace": "team-a", "app": "web"}
        created = await client.post(RULES, json=body, headers=as_("developer"))
        assert created.status_code == 201, created.text
        rule = created.json()
        assert created.headers["location"] == f"{RULES}/{rule['id']}"
        assert (rule["pattern"], rule["namespace"], rule["app"], rule["muted"]) == (
            "deployment.*",
            "team-a",
            "web",
            False,
        )
        listed = (await client.get(RULES, headers=as_("developer"))).json()["items"]
        assert [r["id"] for r in listed] == [rule["id"]]
        muted = await client.patch(f"{RULES}/{rule['id']}", json={"muted": True}, headers=as_("developer"))
        assert muted.json()["muted"] is True
        assert (await client.get(f"{RULES}/{rule['id']}", headers=as_("developer"))).json()["muted"] is True
        assert (await client.delete(f"{RULES}/{rule['id']}", headers=as_("developer"))).status_code == 204
        assert_problem(await client.get(f"{RULES}/{rule['id']}", headers=as_("developer")), 404)
        actions = await session.scalars(select(AuditEvent.action).where(AuditEvent.target == rule["id"]))
        assert sorted(actions) == ["inbox_rule.create", "inbox_rule.delete", "inbox_rule.update"]

    async def test_a_follow_made_through_the_api_delivers(
        self, client: httpx.AsyncClient, inbox: Inbox, world: World, as_: Identities
    ) -> None:
        body = {"pattern": "deployment.failed", "namespace": "team-a"}
        assert (await client.post(RULES, json=body, headers=as_("viewer"))).status_code == 201
        await notify(inbox, world, 1)
        items = (await client.get(INBOX, headers=as_("viewer"))).json()["items"]
        assert [item["reason"] for item in items] == ["follow"]

    async def test_the_same_rule_twice_is_409(self, client: httpx.AsyncClient, as_: Identities) -> None:
        body = {"pattern": "build.*", "namespace": "team-a"}
        assert (await client.post(RULES, json=body, headers=as_("viewer"))).status_code == 201
        assert_problem(await client.post(RULES, json=body, headers=as_("viewer")), 409)

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"pattern": "deployment.*", "namespace": "team-b"}, "namespace"),  # exists, not theirs
            ({"pattern": "deployment.*", "namespace": "team-z"}, "namespace"),
            ({"pattern": "deployment.*", "namespace": "team-a", "app": "nope"}, "app"),
            ({"pattern": "deployment.*", "app": "web"}, None),
            ({"pattern": "nonsense.*"}, "pattern"),
            ({"pattern": "deployment"}, "pattern"),
            ({"pattern": "deployment.*\u0000"}, "pattern"),
            ({"pattern": "deployment.*", "owner": "me"}, "owner"),
        ],
    )
    async def test_a_rule_the_user_may_not_or_cannot_have_is_422(
        self, client: httpx.AsyncClient, as_: Identities, body: dict[str, Any], field: str | None
    ) -> None:
        """A namespace the user cannot see answers as one that does not exist."""
        response = await client.post(RULES, json=body, headers=as_("viewer"))
        assert_problem(response, 422)
        if field is not None:
            assert response.json()["errors"][0]["loc"][:2] == ["body", field]

    async def test_another_users_rule_is_not_found(self, client: httpx.AsyncClient, as_: Identities) -> None:
        rule = (await client.post(RULES, json={"pattern": "build.*"}, headers=as_("viewer"))).json()
        for response in (
            await client.get(f"{RULES}/{rule['id']}", headers=as_("owner")),
            await client.patch(f"{RULES}/{rule['id']}", json={"muted": True}, headers=as_("owner")),
            await client.delete(f"{RULES}/{rule['id']}", headers=as_("owner")),
        ):
            assert_problem(response, 404)
        assert (await client.get(RULES, headers=as_("owner"))).json()["items"] == []


class TestHostileInput:
    def test_no_body_field_is_coerced_from_a_lookalike(self) -> None:
        assert lax_scalars(ROUTERS) == []

    @pytest.mark.parametrize("path", [INBOX, RULES])
    async def test_crafted_cursors_are_400(
        self, client: httpx.AsyncClient, as_: Identities, path: str
    ) -> None:
        for crafted in CRAFTED_CURSORS:
            assert_problem(await client.get(path, params={"cursor": crafted}, headers=as_("owner")), 400)

    @pytest.mark.parametrize("notification_id", ["0", "-1", str(2**63), "x", "1%00"])
    async def test_an_id_out_of_range_is_422(
        self, client: httpx.AsyncClient, as_: Identities, notification_id: str
    ) -> None:
        assert_problem(await client.post(f"{INBOX}/{notification_id}/read", headers=as_("owner")), 422)

    @pytest.mark.parametrize("up_to", [*NOT_INTEGERS, 2**63, 0])
    async def test_read_all_takes_only_an_id(
        self, client: httpx.AsyncClient, as_: Identities, up_to: Any
    ) -> None:
        assert_problem(
            await client.post(f"{INBOX}/read-all", json={"up_to": up_to}, headers=as_("owner")), 422
        )

    @pytest.mark.parametrize("muted", NOT_BOOLEANS)
    async def test_muted_takes_only_a_boolean(
        self, client: httpx.AsyncClient, as_: Identities, muted: Any
    ) -> None:
        body = {"pattern": "build.*", "muted": muted}
        assert_problem(await client.post(RULES, json=body, headers=as_("owner")), 422)

    async def test_a_rule_id_that_is_no_uuid_is_422(self, client: httpx.AsyncClient, as_: Identities) -> None:
        assert_problem(await client.get(f"{RULES}/not-a-uuid", headers=as_("owner")), 422)

    async def test_no_more_rules_than_the_cap(
        self, client: httpx.AsyncClient, as_: Identities, world: World, session: AsyncSession
    ) -> None:
        """Each rule is matched against every event delivered: one user cannot make the consumer slow."""
        spaces = [Namespace(name=f"space-{i}") for i in range(MAX_RULES)]
        session.add_all(spaces)
        await session.flush()
        session.add_all(
            InboxRule(user_id=world["owner"].id, pattern="build.*", namespace_id=n.id) for n in spaces
        )
        await session.flush()
        assert_problem(await client.post(RULES, json={"pattern": "build.*"}, headers=as_("owner")), 409)
        assert (
            await client.post(RULES, json={"pattern": "build.*"}, headers=as_("viewer"))
        ).status_code == 201
