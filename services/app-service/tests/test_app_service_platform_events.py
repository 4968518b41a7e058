"""app-service tells the platform event log what happened to apps, releases and deployments, in the
transaction of the change: a client, a consumer or delivery metrics read the story there, not in
app-service's own tables."""

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import Role, User
from kepler_kit.events import START, StoredEvent, read_after
from kepler_kit.testing.identities import Minter, make_member, make_user

IMAGE = "registry.example.com/team/web"
BASE = "/api/v1/namespaces/team-a/apps/web"
PATIENT = {"progress_deadline_seconds": 86400}


async def logged(session: AsyncSession, family: str = "") -> list[StoredEvent]:
    events = (await read_after(session, START, limit=10_000)).events
    return [e for e in events if e.kind.startswith(family)]


async def deploy(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"{BASE}/deployments", json=body)
    assert response.status_code == 201, response.text
    deployment: dict[str, Any] = response.json()
    return deployment


@pytest.mark.usefixtures("web")
class TestDeployments:
    async def test_a_deploy_is_told_from_request_to_outcome(
        self, client: httpx.AsyncClient, deployer: Any, session: AsyncSession, admin: User
    ) -> None:
        created = await deploy(client, {"image": f"{IMAGE}:1", **PATIENT})
        await deployer.run()
        events = await logged(session, "")
        kinds = [e.kind for e in events if e.kind.startswith(("release.", "deployment."))]
        assert kinds == ["release.created", "deployment.requested", "deployment.succeeded"]
        requested, succeeded = events[-2], events[-1]
        assert (requested.actor, requested.actor_id) == (admin.email, admin.id)
        assert requested.correlation_id is not None, "the request id that asked for it"
        assert (succeeded.namespace, succeeded.app, succeeded.actor) == ("team-a", "web", "kepler")
        outcome = succeeded.event
        assert outcome is not None, "a kind this code knows parses into its model"
        assert str(outcome.model_dump()["deployment_id"]) == created["id"]
        assert succeeded.data["deployment_id"] == created["id"]
        assert succeeded.data["release"] == 1
        assert succeeded.data["requested_at"] <= succeeded.occurred_at.isoformat()
        assert succeeded.data["committed_at"] is None, "an image deployed by hand has no commit"

    async def test_an_automatic_rollback_is_told_as_rolled_back_then_restored(
        self, client: httpx.AsyncClient, deployer: Any, session: AsyncSession
    ) -> None:
        await deploy(client, {"image": f"{IMAGE}:1", **PATIENT})
        await deployer.run()
        await deploy(client, {"image": f"{IMAGE}-crashloop:2"})
        await deployer.run()
        tail = [(e.kind, e.data.get("release"), e.data.get("automatic")) for e in await logged(session)][-3:]
        assert tail == [
            ("deployment.rolled_back", 2, False),
            ("deployment.requested", 1, True),
            ("deployment.succeeded", 1, True),
        ]
        restored = (await logged(session, "deployment.succeeded"))[-1]
        assert restored.data["rollback"], "release 1 is older than the app's newest: not a new change"
        rolled_back = (await logged(session, "deployment.rolled_back"))[0]
        assert rolled_back.data["to_release"] == 1
        assert rolled_back.data["reason"] in ("CrashLoop", "ProgressDeadlineExceeded")

    async def test_a_superseded_deployment_is_told(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        first = await deploy(client, {"image": f"{IMAGE}:1"})
        await deploy(client, {"image": f"{IMAGE}:2"})
        superseded = await logged(session, "deployment.superseded")
        assert [e.data["deployment_id"] for e in superseded] == [first["id"]]

    async def test_a_refused_request_publishes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """The event is a row of the request's transaction: a 4xx rolls it back with everything else."""
        before = len(await logged(session))
        assert (await client.post(f"{BASE}/deployments", json={"release": 7})).status_code == 404
        assert (await client.post(f"{BASE}/rollback", json={})).status_code == 409
        assert len(await logged(session)) == before


@pytest.mark.usefixtures("web")
class TestApproval:
    async def test_a_held_deployment_asks_for_approval_and_its_approval_is_told(
        self,
        client: httpx.AsyncClient,
        anonymous_client: httpx.AsyncClient,
        session: AsyncSession,
        minter: Minter,
    ) -> None:
        patched = await client.patch("/api/v1/namespaces/team-a", json={"require_deploy_approval": True})
        assert patched.status_code == 200, patched.text
        created = await deploy(client, {"image": f"{IMAGE}:1"})
        maintainer = await make_user(session, "maint@example.com")
        await make_member(session, maintainer, "team-a", Role.maintainer)
        anonymous_client.headers.update(minter.identity(maintainer, "app-service"))
        approved = await anonymous_client.post(f"{BASE}/deployments/{created['id']}/approve")
        assert approved.status_code == 200, approved.text
        kinds = [
            (e.kind, e.actor) for e in await logged(session) if "approv" in e.kind or "requested" in e.kind
        ]
        assert kinds == [
            ("deployment.requested", "admin@example.com"),
            ("approval.requested", "admin@example.com"),
            ("deployment.approved", "maint@example.com"),
        ]


@pytest.mark.usefixtures("web")
class TestApps:
    async def test_app_and_member_changes_are_told(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_user(session, "dev@example.com")
        assert (await client.patch(BASE, json={"description": "the shop"})).status_code == 200
        member = {"email": "dev@example.com", "role": "developer"}
        assert (await client.post("/api/v1/namespaces/team-a/members", json=member)).status_code == 201
        assert (await client.delete(BASE, params={"confirm": "web"})).status_code == 204
        told = [(e.kind, e.app, e.data) for e in await logged(session) if e.kind != "namespace.created"]
        assert told[0][:2] == ("app.created", "web")
        assert told[1] == ("app.updated", "web", {"changed": ["description"]})
        assert (told[2][0], told[2][2]["role"]) == ("member.added", "developer")
        assert told[3][:2] == ("app.deleted", "web")
