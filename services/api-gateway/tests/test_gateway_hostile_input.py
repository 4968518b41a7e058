"""Input a careless client or an attacker sends to the gateway's own API: 4xx problems, never a 500."""

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import User
from kepler_gateway.identity.passwords import hash_password
from kepler_gateway.identity.settings import AuthSettings
from kepler_gateway.identity.wiring import ROUTERS
from kepler_gateway.settings import GatewaySettings
from kepler_gateway.testing import gateway_client
from kepler_kit.testing.hostile import CRAFTED_CURSORS as CRAFTED
from kepler_kit.testing.hostile import NOT_BOOLEANS, NOT_INTEGERS, cursor, lax_scalars
from kepler_kit.testing.identities import TEST_SECRET

PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"
LISTS = ("/api/v1/audit-events", "/api/v1/users", "/api/v1/me/tokens")
NOT_STRING_KEYED = ("/api/v1/audit-events", "/api/v1/me/tokens")  # for users, ["x"] is a fine email key


@pytest.fixture
async def gateway(
    database_url: str,
    redis_url: str,
    upstreams: dict[str, str],
    queue_name: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "secret_key": TEST_SECRET,
        "env": "test",
        "log_level": "WARNING",
        "queue_name": queue_name,
        **upstreams,
    }
    settings = GatewaySettings(**values)
    limits = AuthSettings(login_attempts_per_ip=1000, token_requests_per_ip=1000)
    async with gateway_client(settings, sessionmaker, arq, limits) as client:
        yield client


@pytest.fixture
async def admin_headers(gateway: httpx.AsyncClient, session: AsyncSession) -> dict[str, str]:
    user = User(
        email=f"a-{secrets.token_hex(4)}@example.com",
        display_name="A",
        password_hash=await hash_password(PASSWORD),
        is_admin=True,
    )
    session.add(user)
    await session.flush()
    response = await gateway.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM), response.text


class TestControlCharacters:
    @pytest.mark.parametrize(
        "body",
        [
            {"email": "a\u0000@example.com", "password": PASSWORD},
            {"email": "a@example.com", "password": "pass\u0000word"},
            {"email": "a@example.com\u0007", "password": PASSWORD},
        ],
    )
    async def test_login_refuses_them_with_422(
        self, gateway: httpx.AsyncClient, body: dict[str, str]
    ) -> None:
        """Unauthenticated and reachable by anyone: a NUL used to reach Postgres and answer 500."""
        response = await gateway.post("/api/v1/auth/login", json=body)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["loc"][0] == "body"

    async def test_query_parameter_refuses_them_with_422(
        self, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        response = await gateway.get(
            "/api/v1/audit-events", params={"action": "app.\u0000deploy"}, headers=admin_headers
        )
        assert_problem(response, 422)
        assert response.json()["errors"][0]["loc"] == ["query", "action"]


class TestCraftedCursors:
    @pytest.mark.parametrize("path", LISTS)
    async def test_each_list_answers_400(
        self, gateway: httpx.AsyncClient, admin_headers: dict[str, str], path: str
    ) -> None:
        """A cursor is opaque: one the API did not issue is the client's mistake, never a 500."""
        for crafted in CRAFTED:
            response = await gateway.get(path, params={"cursor": crafted}, headers=admin_headers)
            assert_problem(response, 400)

    @pytest.mark.parametrize("path", NOT_STRING_KEYED)
    async def test_a_string_where_the_key_is_typed_is_400(
        self, gateway: httpx.AsyncClient, admin_headers: dict[str, str], path: str
    ) -> None:
        """["x"] used to reach `int(after[0])`."""
        response = await gateway.get(path, params={"cursor": cursor(["x"])}, headers=admin_headers)
        assert_problem(response, 400)

    @pytest.mark.parametrize("path", NOT_STRING_KEYED)
    async def test_issued_cursors_still_page(
        self, gateway: httpx.AsyncClient, admin_headers: dict[str, str], path: str
    ) -> None:
        """Keys holding a datetime and a UUID survive the trip through the cursor."""
        for name in ("one", "two"):
            created = await gateway.post(
                "/api/v1/me/tokens", json={"name": name, "scope": "read"}, headers=admin_headers
            )
            assert created.status_code == 201, created.text
        first = (await gateway.get(path, params={"limit": 1}, headers=admin_headers)).json()
        assert first["next_cursor"] is not None
        second = await gateway.get(
            path, params={"limit": 1, "cursor": first["next_cursor"]}, headers=admin_headers
        )
        assert second.status_code == 200
        assert second.json()["items"] != first["items"]


async def users(gateway: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await gateway.get("/api/v1/users", params={"limit": 200}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


class TestJsonTypes:
    """JSON that only looks like a boolean or an integer: pydantic's lax mode read `"is_admin": "yes"` (or
    `1`) as true and created a platform admin; `"3"` as 3. Each is a 422 now, and nothing changes."""

    def test_no_request_body_field_is_lax(self) -> None:
        """Structural: a new body field typed `bool`/`int` instead of `JsonBool`/`JsonInt` fails here."""
        assert lax_scalars(ROUTERS) == []

    @pytest.mark.parametrize("value", NOT_BOOLEANS)
    async def test_creating_a_user_refuses_a_flag_that_is_no_boolean(
        self, gateway: httpx.AsyncClient, admin_headers: dict[str, str], value: Any
    ) -> None:
        body = {"email": "dan@example.com", "password": PASSWORD, "is_admin": value}
        response = await gateway.post("/api/v1/users", json=body, headers=admin_headers)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["loc"] == ["body", "is_admin"]
        assert "dan@example.com" not in [user["email"] for user in await users(gateway, admin_headers)]

    @pytest.mark.parametrize("field", ["is_admin", "disabled"])
    @pytest.mark.parametrize("value", NOT_BOOLEANS)
    async def test_updating_a_user_refuses_a_flag_that_is_no_boolean(
        self, gateway: httpx.AsyncClient, admin_headers: dict[str, str], field: str, value: Any
    ) -> None:
        body = {"email": "dan@example.com", "password": PASSWORD}
        created = await gateway.post("/api/v1/users", json=body, headers=admin_headers)
        assert created.status_code == 201, created.text
        user = created.json()
        response = await gateway.patch(
            f"/api/v1/users/{user['id']}", json={field: value}, headers=admin_headers
        )
        assert_problem(response, 422)
        assert response.json()["errors"][0]["loc"] == ["body", field]
        assert user in await users(gateway, admin_headers)

    async def test_real_booleans_still_work(
        self, gateway: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        body = {"email": "dan@example.com", "password": PASSWORD, "is_admin": False}
        created = await gateway.post("/api/v1/users", json=body, headers=admin_headers)
        assert created.status_code == 201, created.text
        changed = await gateway.patch(
            f"/api/v1/users/{created.json()['id']}", json={"disabled": True}, headers=admin_headers
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["disabled_at"] is not None

    @pytest.mark.parametrize("value", NOT_INTEGERS)
    async def test_a_token_lifetime_must_be_an_integer(
        self, gateway: httpx.AsyncClient, admin_headers: dict[str, str], value: Any
    ) -> None:
        """`true` too: a Python bool is an int, and lax mode would have made it one day."""
        body = {"name": "ci", "scope": "read", "expires_in_days": value}
        response = await gateway.post("/api/v1/me/tokens", json=body, headers=admin_headers)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["loc"] == ["body", "expires_in_days"]
        tokens = await gateway.get("/api/v1/me/tokens", headers=admin_headers)
        assert tokens.json()["items"] == []
