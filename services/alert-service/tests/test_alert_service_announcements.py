"""Announcements: who may publish where (admins to everyone, owners to their namespace), who sees them,
their expiry, their withdrawal, and that publishing one tells the log and the inboxes."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_alert_service.testing import Identities, Inbox
from kepler_db import Announcement, AuditEvent, PlatformEvent, TokenScope
from kepler_kit.testing.hostile import CRAFTED_CURSORS

PROBLEM = "application/problem+json"
URL = "/api/v1/announcements"
NOTICE = {"title": "Cluster upgrade tonight", "body": "Deploys pause 22:00-23:00.", "severity": "warning"}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM), response.text


async def announce(
    client: httpx.AsyncClient, headers: dict[str, str], namespace: str | None = None, **body: Any
) -> httpx.Response:
    params = {"namespace": namespace} if namespace else {}
    return await client.post(URL, json=NOTICE | body, params=params, headers=headers)


async def titles(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["title"] for item in response.json()["items"]]


async def events(session: AsyncSession) -> int:
    query = select(func.count()).where(PlatformEvent.kind == "announcement.published")
    return int(await session.scalar(query) or 0)


class TestPublishing:
    async def test_an_admin_speaks_to_everyone(
        self, client: httpx.AsyncClient, as_: Identities, session: AsyncSession
    ) -> None:
        """The row, its event in the log and its audit row are one transaction's."""
        response = await announce(client, as_("admin"))
        assert response.status_code == 201, response.text
        made = response.json()
        assert (made["namespace"], made["severity"], made["author"]) == (None, "warning", "admin@example.com")
        for who in ("viewer", "outsider", "admin"):
            assert await titles(client, as_(who)) == [NOTICE["title"]]
        event = await session.scalar(
            select(PlatformEvent).where(PlatformEvent.kind == "announcement.published")
        )
        assert event is not None
        assert (event.service, event.actor, event.namespace) == ("alert-service", "admin@example.com", None)
        assert event.data["announcement_id"] == made["id"]
        audit = await session.scalar(select(AuditEvent).where(AuditEvent.target == made["id"]))
        assert audit is not None
        assert (audit.action, audit.actor) == ("announcement.publish", "admin@example.com")

    async def test_an_owner_speaks_to_their_namespace_only(
        self, client: httpx.AsyncClient, as_: Identities
    ) -> None:
        response = await announce(client, as_("owner"), "team-a", severity="critical")
        assert response.status_code == 201, response.text
        assert response.json()["namespace"] == "team-a"
        assert await titles(client, as_("viewer")) == [NOTICE["title"]]
        assert await titles(client, as_("outsider")) == []
        assert await titles(client, as_("admin")) == [NOTICE["title"]]  # admins may see every namespace

    async def test_its_location_shows_it_to_those_it_is_for(
        self, client: httpx.AsyncClient, as_: Identities
    ) -> None:
        """Expired or not (a notification links to it); a namespace's, to no one outside it."""
        response = await announce(client, as_("owner"), "team-a")
        location = response.headers["location"]
        assert location == f"{URL}/{response.json()['id']}"
        for who in ("viewer", "admin"):
            shown = await client.get(location, headers=as_(who))
            assert shown.json() == response.json(), shown.text
        assert_problem(await client.get(location, headers=as_("outsider")), 404)
        assert (await client.delete(location, headers=as_("owner"))).status_code == 204
        assert_problem(await client.get(location, headers=as_("viewer")), 404)

    async def test_the_inboxes_of_the_namespace_get_it(
        self, client: httpx.AsyncClient, as_: Identities, inbox: Inbox
    ) -> None:
        assert (await announce(client, as_("owner"), "team-a")).status_code == 201
        assert await inbox.deliver() == 1
        items = (await client.get("/api/v1/inbox", headers=as_("viewer"))).json()["items"]
        assert [(i["event"]["kind"], i["event"]["data"]["title"]) for i in items] == [
            ("announcement.published", NOTICE["title"])
        ]
        assert (await client.get("/api/v1/inbox", headers=as_("outsider"))).json()["items"] == []

    @pytest.mark.parametrize(
        ("who", "namespace", "status"),
        [
            ("owner", None, 403),  # platform-wide: admins only
            ("owner", "team-b", 404),  # not theirs: as if it did not exist
            ("maintainer", "team-a", 403),
            ("viewer", "team-a", 403),
            ("outsider", "team-a", 404),
        ],
    )
    async def test_others_may_not(
        self,
        client: httpx.AsyncClient,
        as_: Identities,
        session: AsyncSession,
        who: str,
        namespace: str | None,
        status: int,
    ) -> None:
        assert_problem(await announce(client, as_(who), namespace), status)
        assert await events(session) == 0

    async def test_an_owner_needs_an_admin_scoped_token(
        self, client: httpx.AsyncClient, as_: Identities
    ) -> None:
        assert_problem(await announce(client, as_("owner", scope=TokenScope.write), "team-a"), 403)
        response = await announce(client, as_("owner", scope=TokenScope.admin), "team-a")
        assert response.status_code == 201, response.text

    async def test_an_admin_naming_no_existing_namespace_is_404(
        self, client: httpx.AsyncClient, as_: Identities, session: AsyncSession
    ) -> None:
        assert_problem(await announce(client, as_("admin"), "team-z"), 404)
        assert await events(session) == 0

    async def test_anonymous_is_401(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.post(URL, json=NOTICE), 401)
        assert_problem(await client.get(URL), 401)


class TestExpiry:
    async def test_an_expiry_must_be_in_the_future(
        self, client: httpx.AsyncClient, as_: Identities, session: AsyncSession
    ) -> None:
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        response = await announce(client, as_("admin"), expires_at=past)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["loc"][:2] == ["body", "expires_at"]
        naive = (datetime.now() + timedelta(days=1)).replace(tzinfo=None).isoformat()
        assert_problem(await announce(client, as_("admin"), expires_at=naive), 422)
        assert await events(session) == 0

    async def test_expired_ones_are_listed_only_when_asked_for(
        self, client: httpx.AsyncClient, as_: Identities, session: AsyncSession
    ) -> None:
        soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        made = (await announce(client, as_("admin"), expires_at=soon, title="Old")).json()
        assert (await announce(client, as_("admin"), title="Current")).status_code == 201
        assert await titles(client, as_("viewer")) == ["Current", "Old"]
        await session.execute(
            update(Announcement).where(Announcement.id == made["id"]).values(expires_at=datetime.now(UTC))
        )
        assert await titles(client, as_("viewer")) == ["Current"]
        assert await titles(client, as_("viewer"), include_expired="true") == ["Current", "Old"]

    async def test_pages_follow_each_other(self, client: httpx.AsyncClient, as_: Identities) -> None:
        for n in range(3):
            assert (await announce(client, as_("admin"), title=f"n{n}")).status_code == 201
        first = (await client.get(URL, params={"limit": 2}, headers=as_("viewer"))).json()
        rest = await client.get(
            URL, params={"limit": 2, "cursor": first["next_cursor"]}, headers=as_("viewer")
        )
        assert [i["title"] for i in first["items"] + rest.json()["items"]] == ["n2", "n1", "n0"]
        assert rest.json()["next_cursor"] is None


class TestWithdrawal:
    async def test_an_owner_withdraws_their_namespaces_and_it_leaves_the_inboxes(
        self, client: httpx.AsyncClient, as_: Identities, inbox: Inbox, session: AsyncSession
    ) -> None:
        made = (await announce(client, as_("owner"), "team-a")).json()
        await inbox.deliver()
        assert (await client.get("/api/v1/inbox/unread-count", headers=as_("viewer"))).json() == {"unread": 1}
        assert (await client.delete(f"{URL}/{made['id']}", headers=as_("owner"))).status_code == 204
        assert await titles(client, as_("viewer"), include_expired="true") == []
        assert (await client.get("/api/v1/inbox/unread-count", headers=as_("viewer"))).json() == {"unread": 0}
        actions = await session.scalars(select(AuditEvent.action).where(AuditEvent.target == made["id"]))
        assert sorted(actions) == ["announcement.publish", "announcement.withdraw"]
        assert_problem(await client.delete(f"{URL}/{made['id']}", headers=as_("owner")), 404)

    async def test_one_withdrawn_before_delivery_reaches_no_inbox(
        self, client: httpx.AsyncClient, as_: Identities, inbox: Inbox
    ) -> None:
        made = (await announce(client, as_("admin"))).json()
        assert (await client.delete(f"{URL}/{made['id']}", headers=as_("admin"))).status_code == 204
        await inbox.deliver()
        assert await inbox.count() == 0

    @pytest.mark.parametrize(
        ("author", "namespace", "who", "status"),
        [
            ("owner", "team-a", "maintainer", 403),
            ("owner", "team-a", "outsider", 404),  # not theirs to know of
            ("admin", None, "owner", 403),  # platform-wide: admins only
            ("owner", "team-a", "admin", 204),
        ],
    )
    async def test_in_the_scope_one_may_publish_in(
        self,
        client: httpx.AsyncClient,
        as_: Identities,
        author: str,
        namespace: str | None,
        who: str,
        status: int,
    ) -> None:
        made = (await announce(client, as_(author), namespace)).json()
        response = await client.delete(f"{URL}/{made['id']}", headers=as_(who))
        assert response.status_code == status, response.text
        listed = await titles(client, as_(author))
        assert listed == ([] if status == 204 else [NOTICE["title"]])

    async def test_an_owners_write_token_may_not_withdraw(
        self, client: httpx.AsyncClient, as_: Identities
    ) -> None:
        made = (await announce(client, as_("owner"), "team-a")).json()
        assert_problem(
            await client.delete(f"{URL}/{made['id']}", headers=as_("owner", scope=TokenScope.write)), 403
        )


class TestHostileInput:
    @pytest.mark.parametrize(
        "body",
        [
            {"title": "a\u0000b"},
            {"body": "x\u0000"},
            {"title": "   "},
            {"title": "x" * 201},
            {"severity": "apocalyptic"},
            {"expires_at": "soon"},
            {"expires_at": 10**20},
            {"author": "someone else"},
        ],
    )
    async def test_bad_fields_are_422(
        self, client: httpx.AsyncClient, as_: Identities, session: AsyncSession, body: dict[str, Any]
    ) -> None:
        assert_problem(await announce(client, as_("admin"), **body), 422)
        assert await events(session) == 0

    @pytest.mark.parametrize("namespace", ["Team-A", "a\u0000b", "kube-system", "x" * 64])
    async def test_a_namespace_that_cannot_be_one_is_422(
        self, client: httpx.AsyncClient, as_: Identities, namespace: str
    ) -> None:
        response = await announce(client, as_("admin"), namespace)
        assert_problem(response, 422)

    async def test_crafted_cursors_are_400(self, client: httpx.AsyncClient, as_: Identities) -> None:
        for crafted in CRAFTED_CURSORS:
            assert_problem(await client.get(URL, params={"cursor": crafted}, headers=as_("viewer")), 400)

    async def test_an_id_that_is_no_uuid_is_422(self, client: httpx.AsyncClient, as_: Identities) -> None:
        assert_problem(await client.delete(f"{URL}/nope", headers=as_("admin")), 422)
