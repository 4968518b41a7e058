"""Namespace and app CRUD as a client sees it: status codes, problem bodies, pagination, audit rows."""

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import AuditEvent, Cluster, User
from kepler_kit.testing.identities import Minter

PROBLEM = "application/problem+json"


def app_body(name: str = "web", **extra: Any) -> dict[str, Any]:
    return {"name": name, "git_url": "https://git.example.com/team/web.git", **extra}


async def create_namespace(client: httpx.AsyncClient, name: str = "team-a") -> dict[str, Any]:
    response = await client.post("/api/v1/namespaces", json={"name": name, "display_name": "Team A"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class TestCreateNamespace:
    async def test_created_provisioning_with_location(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/namespaces", json={"name": "team-a"})
        assert response.status_code == 201
        assert response.headers["location"] == "/api/v1/namespaces/team-a"
        assert response.json()["status"] == "provisioning"

    async def test_duplicate_is_conflict(self, client: httpx.AsyncClient) -> None:
        await create_namespace(client)
        response = await client.post("/api/v1/namespaces", json={"name": "team-a"})
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"].endswith("/conflict")

    async def test_invalid_names_are_field_errors(self, client: httpx.AsyncClient) -> None:
        for name in ("Team_A", "-a", "a" * 64, "kube-system", "default", ""):
            response = await client.post("/api/v1/namespaces", json={"name": name})
            assert response.status_code == 422, name
            problem = response.json()
            assert problem["status"] == 422
            assert problem["errors"][0]["loc"] == ["body", "name"]

    async def test_unknown_field_rejected(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/namespaces", json={"name": "ok", "owner": "me"})
        assert response.status_code == 422

    async def test_malformed_json_is_422_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/namespaces", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM

    async def test_audited_in_same_transaction(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await client.post(
            "/api/v1/namespaces", json={"name": "team-a"}, headers={"x-request-id": "r-1"}
        )
        assert response.headers["x-request-id"] == "r-1"
        event = await session.scalar(select(AuditEvent).where(AuditEvent.request_id == "r-1"))
        assert event is not None
        assert (event.action, event.target, event.namespace, event.outcome) == (
            "namespace.create",
            "team-a",
            "team-a",
            "success",
        )


class TestAuditedClientAddress:
    """Issue #8 item 15: a service records the address the gateway resolved and signed into the identity,
    never one from a header the client could write."""

    async def test_taken_from_the_gateways_identity(
        self, anonymous_client: httpx.AsyncClient, minter: Minter, admin: User, session: AsyncSession
    ) -> None:
        headers = {
            **minter.identity(admin, "app-service", client_ip="203.0.113.9"),
            "x-forwarded-for": "6.6.6.6, 7.7.7.7",
            "x-request-id": "r-ip-1",
        }

        await anonymous_client.post("/api/v1/namespaces", json={"name": "team-ip"}, headers=headers)

        event = await session.scalar(select(AuditEvent).where(AuditEvent.request_id == "r-ip-1"))
        assert event is not None
        assert str(event.client_ip) == "203.0.113.9"

    async def test_a_token_presented_directly_is_audited_with_the_peer(
        self, anonymous_client: httpx.AsyncClient, minter: Minter, admin: User, session: AsyncSession
    ) -> None:
        """No proxy is trusted by default, so a forged X-Forwarded-For is ignored."""
        headers = {**minter.access(admin), "x-forwarded-for": "6.6.6.6", "x-request-id": "r-ip-2"}

        await anonymous_client.post("/api/v1/namespaces", json={"name": "team-ip"}, headers=headers)

        event = await session.scalar(select(AuditEvent).where(AuditEvent.request_id == "r-ip-2"))
        assert event is not None
        assert str(event.client_ip) == "127.0.0.1"


class TestProvisionNamespace:
    async def test_job_runs_after_commit_and_activates(self, client: httpx.AsyncClient, worker: Any) -> None:
        await create_namespace(client)
        assert await worker.run() == 1
        response = await client.get("/api/v1/namespaces/team-a")
        assert response.json()["status"] == "active"

    async def test_failed_request_enqueues_nothing(self, client: httpx.AsyncClient, worker: Any) -> None:
        await create_namespace(client)
        await worker.run()
        await client.post("/api/v1/namespaces", json={"name": "team-a"})  # 409: rolled back
        assert await worker.run() == 0


class TestListNamespaces:
    async def test_cursor_pages_cover_all_in_order(self, client: httpx.AsyncClient) -> None:
        names = [f"ns-{i:02d}" for i in range(7)]
        for name in reversed(names):
            await create_namespace(client, name)
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/api/v1/namespaces", params=params)).json()
            seen += [item["name"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == names

    async def test_bad_cursor_and_limit(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/api/v1/namespaces", params={"cursor": "%%%"})).status_code == 400
        assert (await client.get("/api/v1/namespaces", params={"limit": 0})).status_code == 422
        assert (await client.get("/api/v1/namespaces", params={"limit": 201})).status_code == 422


class TestUpdateAndDeleteNamespace:
    async def test_patch_changes_only_given_fields(self, client: httpx.AsyncClient) -> None:
        await create_namespace(client)
        response = await client.patch("/api/v1/namespaces/team-a", json={"description": "payments"})
        assert response.status_code == 200
        assert (response.json()["display_name"], response.json()["description"]) == ("Team A", "payments")

    async def test_delete_refused_while_apps_exist(self, client: httpx.AsyncClient) -> None:
        await create_namespace(client)
        await client.post("/api/v1/namespaces/team-a/apps", json=app_body())
        assert (await client.delete("/api/v1/namespaces/team-a")).status_code == 409
        await client.delete("/api/v1/namespaces/team-a/apps/web", params={"confirm": "web"})
        assert (await client.delete("/api/v1/namespaces/team-a")).status_code == 204
        assert (await client.get("/api/v1/namespaces/team-a")).status_code == 404


class TestApps:
    async def test_create_get_list(self, client: httpx.AsyncClient) -> None:
        await create_namespace(client)
        ports = [{"name": "http", "port": 8080}]
        response = await client.post(
            "/api/v1/namespaces/team-a/apps", json=app_body(ports=ports, language="go")
        )
        assert response.status_code == 201, response.text
        app = response.json()
        assert app["namespace"] == "team-a"
        assert app["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        assert (await client.get("/api/v1/namespaces/team-a/apps/web")).json() == app
        listed = (await client.get("/api/v1/namespaces/team-a/apps")).json()
        assert [a["name"] for a in listed["items"]] == ["web"]

    async def test_same_name_in_other_namespace_is_fine(self, client: httpx.AsyncClient) -> None:
        for ns in ("team-a", "team-b"):
            await create_namespace(client, ns)
            assert (await client.post(f"/api/v1/namespaces/{ns}/apps", json=app_body())).status_code == 201
        again = await client.post("/api/v1/namespaces/team-a/apps", json=app_body())
        assert again.status_code == 409

    async def test_unknown_namespace_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/namespaces/nope/apps", json=app_body())
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM

    async def test_bad_fields_rejected_and_nothing_written(self, client: httpx.AsyncClient) -> None:
        await create_namespace(client)
        bad: list[dict[str, Any]] = [
            app_body(name="9web"),
            app_body(name="a" * 54),
            app_body(git_url="not a url"),
            app_body(git_url="https://user:secretpw@github.com/x/y.git"),  # credentials every viewer reads
            app_body(git_url="https://ghp_token@github.com/x/y.git"),
            app_body(git_url="ssh://git:secretpw@github.com/x/y.git"),
            app_body(default_branch="feat..x"),
            app_body(dockerfile_path="../Dockerfile"),
            app_body(ports=[{"name": "http", "port": 70000}]),
            app_body(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 81}]),
            app_body(ports=[{"name": "http", "port": 80, "protocol": "HTTP"}]),
        ]
        for body in bad:
            response = await client.post("/api/v1/namespaces/team-a/apps", json=body)
            assert response.status_code == 422, body
            assert response.json()["errors"], body
        assert (await client.get("/api/v1/namespaces/team-a/apps")).json()["items"] == []

    async def test_ssh_user_names_are_not_credentials(self, client: httpx.AsyncClient) -> None:
        """`ssh://git@host/…` and `git@host:path` name the ssh user every git host expects: accepted."""
        await create_namespace(client)
        for name, url in [("a1", "ssh://git@github.com/x/y.git"), ("a2", "git@github.com:x/y.git")]:
            response = await client.post(
                "/api/v1/namespaces/team-a/apps", json=app_body(name=name, git_url=url)
            )
            assert response.status_code == 201, url

    async def test_credentials_cannot_be_patched_in(self, client: httpx.AsyncClient) -> None:
        await create_namespace(client)
        await client.post("/api/v1/namespaces/team-a/apps", json=app_body())
        url = "https://tok:ghp_secret@github.com/a/b"
        patched = await client.patch("/api/v1/namespaces/team-a/apps/web", json={"git_url": url})
        assert patched.status_code == 422
        assert "ghp_secret" not in patched.text
        got = (await client.get("/api/v1/namespaces/team-a/apps/web")).json()
        assert got["git_url"] == "https://git.example.com/team/web.git"

    async def test_patch_and_delete_with_confirmation(self, client: httpx.AsyncClient) -> None:
        await create_namespace(client)
        await client.post("/api/v1/namespaces/team-a/apps", json=app_body())
        patched = await client.patch("/api/v1/namespaces/team-a/apps/web", json={"default_branch": "develop"})
        assert patched.json()["default_branch"] == "develop"
        assert (await client.patch("/api/v1/namespaces/team-a/apps/web", json={})).status_code == 422
        wrong = await client.delete("/api/v1/namespaces/team-a/apps/web", params={"confirm": "api"})
        assert wrong.status_code == 400
        assert (await client.get("/api/v1/namespaces/team-a/apps/web")).status_code == 200
        ok = await client.delete("/api/v1/namespaces/team-a/apps/web", params={"confirm": "web"})
        assert ok.status_code == 204


class TestServiceSurface:
    async def test_unknown_route_and_method_are_problems(self, client: httpx.AsyncClient) -> None:
        missing = await client.get("/api/v1/nothing-here")
        assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM)
        wrong = await client.put("/api/v1/namespaces")
        assert (wrong.status_code, wrong.headers["content-type"]) == (405, PROBLEM)

    async def test_status_and_readiness(self, client: httpx.AsyncClient) -> None:
        status = (await client.get("/api/v1/status/app-service")).json()
        assert status["ready"] is True
        assert {c["name"] for c in status["checks"]} >= {"database", "redis"}
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/healthz")).json() == {"status": "ok"}

    async def test_metrics_by_route_template(self, client: httpx.AsyncClient) -> None:
        await client.get("/api/v1/namespaces/whatever")
        metrics = (await client.get("/metrics")).text
        assert 'route="/api/v1/namespaces/{namespace}"' in metrics


class TestSandbox:
    async def test_readiness_says_a_cluster_is_simulated(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        session.add(Cluster(name="sandbox", api_url="http://127.0.0.1:9", simulated=True))
        await session.flush()
        checks = {c["name"]: c for c in (await client.get("/api/v1/status/app-service")).json()["checks"]}
        assert "SIMULATED" in checks["clusters"]["detail"]
        assert "sandbox" in checks["clusters"]["detail"]
