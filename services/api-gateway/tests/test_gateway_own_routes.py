"""Routes the gateway answers itself: merged OpenAPI, docs, platform status, health and metrics."""

from collections import Counter
from typing import Any

import httpx

SERVICES = ("api-gateway", "app-service", "build-service", "alert-service", "terminal-service")


def operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in document["paths"].values() for op in item.values() if isinstance(op, dict)]


class TestMergedOpenAPI:
    async def test_one_document_with_every_service_paths(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()

        assert document["openapi"] == "3.1.0"
        assert document["info"]["title"] == "Kepler API"
        assert document["servers"] == [{"url": "/"}]
        assert {
            "/api/v1/status",
            "/api/v1/status/app-service",
            "/api/v1/namespaces",
            "/api/v1/namespaces/{ns}/apps/{app}/builds",
            "/api/v1/webhooks/github",
            "/api/v1/namespaces/{ns}/alerts",
            "/api/v1/namespaces/{ns}/apps/{app}/pods/{pod}/logs",
        } <= set(document["paths"])
        assert "x-kepler-unavailable" not in document
        assert "x-kepler-conflicts" not in document

    async def test_operation_ids_are_unique_and_collisions_prefixed(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()

        ids = Counter(op["operationId"] for op in operations(document))
        assert max(ids.values()) == 1
        assert {"appServiceGetStatus", "buildServiceGetStatus", "listNamespaces", "getPlatformStatus"} <= set(
            ids
        )

    async def test_conflicting_schemas_are_kept_apart_and_problem_is_shared(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()

        schemas = document["components"]["schemas"]
        assert set(schemas["Status"]["properties"]) == {"namespaces"}
        assert set(schemas["BuildService_Status"]["properties"]) == {"queued", "running"}
        builds = document["paths"]["/api/v1/namespaces/{ns}/apps/{app}/builds"]["get"]
        ok = builds["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/BuildService_Status"}
        assert "Problem" in schemas
        assert not [name for name in schemas if name.endswith("_Problem")]

    async def test_every_operation_has_one_domain_tag(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()

        domain = {tag["name"] for tag in document["tags"]}
        assert {"namespaces", "apps", "builds", "alerts", "terminal", "system", "webhooks"} <= domain
        assert all(tag["description"] for tag in document["tags"])
        assert all(len(op["tags"]) == 1 and op["tags"][0] in domain for op in operations(document))
        webhook = document["paths"]["/api/v1/webhooks/github"]["post"]
        assert webhook["tags"] == ["webhooks"]

    async def test_partial_document_names_the_missing_services(
        self, broken_client: httpx.AsyncClient
    ) -> None:
        response = await broken_client.get("/openapi.json")

        assert response.status_code == 200
        document = response.json()
        assert document["x-kepler-unavailable"] == ["build-service", "alert-service", "terminal-service"]
        assert "/api/v1/namespaces" in document["paths"]

    async def test_docs_page_points_at_the_merged_document(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/docs")

        assert response.status_code == 200
        assert "/openapi.json" in response.text
        assert "Kepler API" in response.text


class TestPlatformStatus:
    async def test_every_service_reports(self, client: httpx.AsyncClient, signed_in: dict[str, str]) -> None:
        response = await client.get("/api/v1/status", headers=signed_in)

        body = response.json()
        assert response.status_code == 200
        assert body["ready"] is True
        assert [s["service"] for s in body["services"]] == list(SERVICES)

    async def test_signed_out_callers_get_a_401_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/status")

        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"

    async def test_unreachable_services_are_not_ready(
        self, broken_client: httpx.AsyncClient, signed_in: dict[str, str]
    ) -> None:
        body = (await broken_client.get("/api/v1/status", headers=signed_in)).json()

        ready = {s["service"]: s["ready"] for s in body["services"]}
        assert body["ready"] is False
        assert ready == {
            "api-gateway": True,
            "app-service": True,
            "build-service": False,
            "alert-service": False,
            "terminal-service": False,
        }


class TestHealth:
    async def test_ready_when_database_redis_and_upstreams_are(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")

        assert response.status_code == 200
        checks = {c["name"] for c in response.json()["checks"]}
        assert checks == {
            "database",
            "redis",
            "app-service",
            "build-service",
            "alert-service",
            "terminal-service",
            "clusters",
        }

    async def test_ready_says_when_kubernetes_is_simulated(self, client: httpx.AsyncClient) -> None:
        """The README promises `/readyz` says loudly that the sandbox is simulated; only app-service did."""
        checks = {c["name"]: c for c in (await client.get("/readyz")).json()["checks"]}

        assert checks["clusters"]["ok"] is True
        assert "SIMULATED" in checks["clusters"]["detail"]
        assert "sandbox" in checks["clusters"]["detail"]

    async def test_not_ready_when_an_upstream_is_down(self, broken_client: httpx.AsyncClient) -> None:
        response = await broken_client.get("/readyz")

        assert response.status_code == 503
        failing = {c["name"] for c in response.json()["checks"] if not c["ok"]}
        assert failing == {"build-service", "alert-service", "terminal-service"}

    async def test_liveness_does_not_depend_on_upstreams(self, broken_client: httpx.AsyncClient) -> None:
        assert (await broken_client.get("/healthz")).status_code == 200


class TestMetrics:
    async def test_proxied_requests_counted_by_upstream_and_route_pattern(
        self, client: httpx.AsyncClient, metrics_port: int
    ) -> None:
        await client.get("/api/v1/namespaces/team-a/echo")

        async with httpx.AsyncClient() as internal:
            text = (await internal.get(f"http://127.0.0.1:{metrics_port}/metrics")).text

        assert (
            'kepler_gateway_proxied_requests_total{method="GET",route="/api/v1/namespaces/**",'
            'status="200",upstream="app-service"}'
        ) in text
        assert "team-a" not in text

    async def test_not_served_on_the_public_port(self, client: httpx.AsyncClient) -> None:
        """Issue #8 item 17: traffic by route and status is for the operator's Prometheus (the internal
        listener), not for anyone who can reach the gateway."""
        response = await client.get("/metrics")

        assert (response.status_code, response.headers["content-type"]) == (404, "application/problem+json")
