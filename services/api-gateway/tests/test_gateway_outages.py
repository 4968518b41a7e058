"""The gateway's own stores going away after start-up (issue #8 item 10): the client is told to come back
(503 with Retry-After), never that the platform has a bug (500)."""

import secrets

import httpx

from kepler_gateway.testing import Relay

PROXIED = "/api/v1/namespaces/team-a/echo"


def an_api_token() -> dict[str, str]:
    """Never seen before, so the gateway must ask Postgres about it."""
    return {"authorization": f"Bearer kpl_{secrets.token_hex(20)}"}


def assert_come_back_later(response: httpx.Response) -> None:
    assert (response.status_code, response.headers["content-type"]) == (503, "application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["status"] == 503


class TestPostgresDown:
    async def test_checking_an_api_token_is_503(
        self, gateway_over_relays: httpx.AsyncClient, postgres_relay: Relay
    ) -> None:
        await postgres_relay.cut()

        for path in (PROXIED, "/api/v1/me"):  # the proxy's path, and the gateway's own routes
            assert_come_back_later(await gateway_over_relays.get(path, headers=an_api_token()))


class TestRedisDown:
    async def test_login_fails_closed_with_503(
        self, gateway_over_relays: httpx.AsyncClient, redis_relay: Relay
    ) -> None:
        """The limiter cannot count attempts without Redis; letting guesses through uncounted would turn
        a Redis outage into an unlimited password-guessing window."""
        await redis_relay.cut()

        response = await gateway_over_relays.post(
            "/api/v1/auth/login", json={"email": "someone@example.com", "password": "a guess, a guess"}
        )

        assert_come_back_later(response)
