"""What a client sees when the gateway cannot get an answer: problem+json naming the service."""

import httpx

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, detail_part: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert detail_part in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]


class TestUpstreamFailures:
    async def test_connection_refused_is_503(self, broken_client: httpx.AsyncClient) -> None:
        response = await broken_client.get("/api/v1/namespaces/team-a/alerts")

        assert_problem(response, 503, "alert-service is unavailable")
        assert response.json()["instance"] == "/api/v1/namespaces/team-a/alerts"

    async def test_protocol_garbage_is_502(self, broken_client: httpx.AsyncClient) -> None:
        response = await broken_client.get("/api/v1/namespaces/team-a/apps/web/builds")

        assert_problem(response, 502, "build-service")

    async def test_no_response_in_time_is_504(self, broken_client: httpx.AsyncClient) -> None:
        response = await broken_client.get(
            "/api/v1/namespaces/team-a/slow", headers={"X-Request-ID": "slow-1"}
        )

        assert_problem(response, 504, "app-service did not respond")
        assert response.headers["x-request-id"] == "slow-1"

    async def test_other_upstreams_keep_working(self, broken_client: httpx.AsyncClient) -> None:
        response = await broken_client.get("/api/v1/namespaces")

        assert response.status_code == 200


class TestUnknownRoutes:
    async def test_unrouted_api_path_is_404_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/nothing-here")

        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["instance"] == "/api/v1/nothing-here"

    async def test_prefix_lookalike_is_not_routed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/namespacesX")

        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM

    async def test_upstream_404_passes_through_unchanged(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/namespaces/team-a/no-such-thing")

        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}  # the fake is plain FastAPI, not the kit
