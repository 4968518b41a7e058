"""CORS answered at the gateway, and the authentication seam in front of every proxied request."""

from typing import Any

import httpx

SPA = "https://console.kepler.example"
ECHO = "/api/v1/namespaces/team-a/echo"


def preflight(
    origin: str, method: str = "DELETE", headers: str = "authorization, content-type"
) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


class TestPreflight:
    async def test_allowed_origin_is_answered_by_the_gateway(self, client: httpx.AsyncClient) -> None:
        response = await client.options(ECHO, headers=preflight(SPA))

        assert response.status_code == 204  # the upstream's echo would have said 200 with a body
        assert response.headers["access-control-allow-origin"] == SPA
        assert "DELETE" in response.headers["access-control-allow-methods"]
        assert response.headers["access-control-allow-headers"] == "authorization, content-type"
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in response.headers["vary"]

    async def test_other_origin_is_refused_without_cors_headers(self, client: httpx.AsyncClient) -> None:
        response = await client.options(ECHO, headers=preflight("https://evil.example"))

        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert "access-control-allow-origin" not in response.headers
        assert "Origin" in response.headers["vary"]

    async def test_plain_options_without_preflight_headers_is_proxied(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.options(ECHO)

        assert response.status_code == 200
        assert response.json()["method"] == "OPTIONS"


class TestActualRequests:
    async def test_allowed_origin_gets_cors_headers_and_request_id_exposed(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get(ECHO, headers={"Origin": SPA})

        assert response.headers["access-control-allow-origin"] == SPA
        assert response.headers["access-control-expose-headers"] == "X-Request-ID"
        assert response.headers["vary"] == "Origin"

    async def test_other_origin_gets_the_response_but_no_permission(self, client: httpx.AsyncClient) -> None:
        response = await client.get(ECHO, headers={"Origin": "https://evil.example"})

        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["vary"] == "Origin"

    async def test_no_origin_no_cors_headers(self, client: httpx.AsyncClient) -> None:
        response = await client.get(ECHO)

        assert "access-control-allow-origin" not in response.headers
        assert "vary" not in response.headers


class TestAuthenticationSeam:
    async def test_rejection_is_a_401_problem_and_never_reaches_the_upstream(
        self, authenticating_gateway_url: str
    ) -> None:
        async with httpx.AsyncClient(base_url=authenticating_gateway_url) as client:
            response = await client.get("/api/v1/namespaces/team-a/slow")  # would hang if it were proxied

        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "a bearer token is required"

    async def test_identity_headers_replace_forged_ones(self, authenticating_gateway_url: str) -> None:
        headers = {"Authorization": "Bearer alice", "X-Kepler-User": "mallory"}
        async with httpx.AsyncClient(base_url=authenticating_gateway_url) as client:
            response = await client.get(ECHO, headers=headers)

        received: list[Any] = response.json()["headers"]
        assert [value for name, value in received if name == "x-kepler-user"] == ["alice"]

    async def test_an_authenticator_crash_is_a_500_problem_that_leaks_nothing(
        self, authenticating_gateway_url: str
    ) -> None:
        async with httpx.AsyncClient(base_url=authenticating_gateway_url) as client:
            response = await client.get(ECHO, headers={"Authorization": "Bearer bug"})

        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert "authenticator" not in response.text

    async def test_gateway_routes_are_not_behind_the_proxy_authenticator(
        self, authenticating_gateway_url: str
    ) -> None:
        async with httpx.AsyncClient(base_url=authenticating_gateway_url) as client:
            response = await client.get("/healthz")

        assert response.status_code == 200
