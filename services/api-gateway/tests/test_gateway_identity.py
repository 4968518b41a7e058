"""Identity at the gateway, as clients see it: logins, sessions, refresh rotation, API tokens, limits,
users, audit, JWKS, and the signed identity each upstream receives."""

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import AuditEvent, Namespace, NamespaceStatus, Role, User
from kepler_gateway.identity.passwords import hash_password
from kepler_gateway.identity.settings import AuthSettings
from kepler_gateway.settings import GatewaySettings
from kepler_gateway.testing import gateway_client
from kepler_kit.identity import IDENTITY_HEADER
from kepler_kit.testing.identities import TEST_SECRET, make_member
from kepler_kit.testing.oidc_provider import OidcProvider, running_provider

PASSWORD = "correct horse battery staple"
Client = httpx.AsyncClient


@pytest.fixture
def settings(
    database_url: str, redis_url: str, upstreams: dict[str, str], queue_name: str
) -> GatewaySettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "secret_key": TEST_SECRET,
        "env": "test",
        "log_level": "WARNING",
        "queue_name": queue_name,
        **upstreams,
    }
    return GatewaySettings(**values)


@pytest.fixture
def auth_settings() -> AuthSettings:
    return AuthSettings(login_attempts_per_account=3, login_attempts_per_ip=1000, token_requests_per_ip=1000)


@pytest.fixture
async def gateway(
    settings: GatewaySettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    auth_settings: AuthSettings,
) -> AsyncIterator[Client]:
    async with gateway_client(settings, sessionmaker, arq, auth_settings) as client:
        yield client


async def local_user(session: AsyncSession, *, admin: bool = False) -> User:
    user = User(
        email=f"u-{secrets.token_hex(4)}@example.com",
        display_name="U",
        password_hash=await hash_password(PASSWORD),
        is_admin=admin,
    )
    session.add(user)
    await session.flush()
    return user


async def login(client: Client, user: User, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": user.email, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def signed_in(client: Client, user: User) -> dict[str, Any]:
    response = await login(client, user)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def eventually(check: Callable[[], Any]) -> bool:
    for _ in range(100):
        if await check():
            return True
        await asyncio.sleep(0.01)
    return False


class TestLogin:
    async def test_password_login_and_me(self, gateway: Client, session: AsyncSession) -> None:
        user = await local_user(session)
        session.add(Namespace(name="team-a", status=NamespaceStatus.active))
        await session.flush()
        await make_member(session, user, "team-a", Role.developer)
        tokens = await signed_in(gateway, user)
        assert tokens["token_type"] == "Bearer"
        assert tokens["refresh_token"].startswith("kpr_")
        me = (await gateway.get("/api/v1/me", headers=bearer(tokens["access_token"]))).json()
        assert me["email"] == user.email
        assert me["memberships"] == [{"namespace": "team-a", "role": "developer"}]

    async def test_wrong_password_is_401_and_audited(self, gateway: Client, session: AsyncSession) -> None:
        user = await local_user(session)
        response = await login(gateway, user, "wrong password!!")
        assert (response.status_code, response.headers["content-type"]) == (401, "application/problem+json")
        assert "wrong password" not in response.text
        events = list(await session.scalars(select(AuditEvent).where(AuditEvent.target == user.email)))
        assert [(e.action, e.outcome) for e in events] == [("auth.login", "failed")]

    async def test_brute_force_is_429_with_retry_after(self, gateway: Client, session: AsyncSession) -> None:
        user = await local_user(session)
        for _ in range(3):
            assert (await login(gateway, user, "guess-guess-guess")).status_code == 401
        blocked = await login(gateway, user)  # even the right password, for now
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0

    async def test_disabled_account_cannot_sign_in(self, gateway: Client, session: AsyncSession) -> None:
        user = await local_user(session)
        user.disabled_at = user.created_at
        await session.flush()
        assert (await login(gateway, user)).status_code == 401


class TestSessions:
    async def test_refresh_rotates_and_reuse_revokes_the_family(
        self, gateway: Client, session: AsyncSession
    ) -> None:
        user = await local_user(session)
        first = await signed_in(gateway, user)
        second = (
            await gateway.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        ).json()
        assert second["refresh_token"] != first["refresh_token"]
        assert (await gateway.get("/api/v1/me", headers=bearer(second["access_token"]))).status_code == 200
        reused = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reused.status_code == 401

        async def revoked() -> bool:
            me = await gateway.get("/api/v1/me", headers=bearer(second["access_token"]))
            return me.status_code == 401

        assert await eventually(revoked)
        refused = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert refused.status_code == 401

    async def test_logout_ends_the_session_at_once(self, gateway: Client, session: AsyncSession) -> None:
        user = await local_user(session)
        tokens = await signed_in(gateway, user)
        assert (
            await gateway.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
        ).status_code == 204

        async def ended() -> bool:
            return (
                await gateway.get("/api/v1/me", headers=bearer(tokens["access_token"]))
            ).status_code == 401

        assert await eventually(ended)

    async def test_forged_tokens_are_401(self, gateway: Client, session: AsyncSession) -> None:
        user = await local_user(session)
        tokens = await signed_in(gateway, user)
        head, payload, signature = tokens["access_token"].split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        none_head = base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=")
        other = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "x"}).encode()).decode().rstrip("=")
        for token in (f"{none_head}.{payload}.", f"{head}.{other}.{signature}", "kpl_not-a-token", "x.y.z"):
            assert (await gateway.get("/api/v1/me", headers=bearer(token))).status_code == 401

    async def test_jwks_publishes_the_public_key(self, gateway: Client) -> None:
        keys = (await gateway.get("/.well-known/jwks.json")).json()["keys"]
        assert keys
        assert {"kty", "crv", "x", "y", "kid"} <= set(keys[0])
        assert "d" not in keys[0]


class TestApiTokens:
    async def test_created_once_used_scoped_and_revoked(self, gateway: Client, session: AsyncSession) -> None:
        user = await local_user(session)
        tokens = await signed_in(gateway, user)
        body = {"name": "ci", "scope": "read", "expires_in_days": 30}
        created = await gateway.post("/api/v1/me/tokens", json=body, headers=bearer(tokens["access_token"]))
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        assert token.startswith("kpl_")
        assert created.json()["prefix"] == token[:12]
        listed = (await gateway.get("/api/v1/me/tokens", headers=bearer(tokens["access_token"]))).json()
        assert "token" not in listed["items"][0]
        assert (await gateway.get("/api/v1/me", headers=bearer(token))).status_code == 200
        narrow = await gateway.post("/api/v1/me/tokens", json={**body, "name": "x"}, headers=bearer(token))
        assert narrow.status_code == 403  # read scope; and tokens never mint tokens
        revoked = await gateway.delete(
            f"/api/v1/me/tokens/{created.json()['id']}", headers=bearer(tokens["access_token"])
        )
        assert revoked.status_code == 204

        async def refused() -> bool:
            return (await gateway.get("/api/v1/me", headers=bearer(token))).status_code == 401

        assert await eventually(refused)

    async def test_namespace_restriction_needs_membership(
        self, gateway: Client, session: AsyncSession
    ) -> None:
        user = await local_user(session)
        session.add(Namespace(name="secret-ns", status=NamespaceStatus.active))
        await session.flush()
        tokens = await signed_in(gateway, user)
        body = {"name": "ci", "scope": "write", "namespace": "secret-ns"}
        response = await gateway.post("/api/v1/me/tokens", json=body, headers=bearer(tokens["access_token"]))
        assert response.status_code == 404


class TestUsers:
    async def test_admin_disables_a_user_whose_tokens_stop_at_once(
        self, gateway: Client, session: AsyncSession
    ) -> None:
        admin, user = await local_user(session, admin=True), await local_user(session)
        admin_tokens, user_tokens = await signed_in(gateway, admin), await signed_in(gateway, user)
        response = await gateway.patch(
            f"/api/v1/users/{user.id}", json={"disabled": True}, headers=bearer(admin_tokens["access_token"])
        )
        assert response.status_code == 200
        assert response.json()["disabled_at"] is not None

        async def refused() -> bool:
            return (
                await gateway.get("/api/v1/me", headers=bearer(user_tokens["access_token"]))
            ).status_code == 401

        assert await eventually(refused)

    async def test_non_admin_cannot_manage_users(self, gateway: Client, session: AsyncSession) -> None:
        user = await local_user(session)
        tokens = await signed_in(gateway, user)
        assert (await gateway.get("/api/v1/users", headers=bearer(tokens["access_token"]))).status_code == 403

    async def test_password_policy_and_duplicates(self, gateway: Client, session: AsyncSession) -> None:
        admin = await local_user(session, admin=True)
        headers = bearer((await signed_in(gateway, admin))["access_token"])
        weak = await gateway.post(
            "/api/v1/users", json={"email": "n@example.com", "password": "short"}, headers=headers
        )
        assert weak.status_code == 422
        body = {"email": "n@example.com", "password": "a much longer passphrase"}
        assert (await gateway.post("/api/v1/users", json=body, headers=headers)).status_code == 201
        assert (await gateway.post("/api/v1/users", json=body, headers=headers)).status_code == 409


class TestAudit:
    async def test_admins_see_all_owners_their_namespace(
        self, gateway: Client, session: AsyncSession
    ) -> None:
        admin, owner, viewer = (
            (await local_user(session, admin=True)),
            await local_user(session),
            await local_user(session),
        )
        session.add(Namespace(name="team-a", status=NamespaceStatus.active))
        await session.flush()
        await make_member(session, owner, "team-a", Role.owner)
        await make_member(session, viewer, "team-a", Role.viewer)
        session.add(AuditEvent(service="t", actor="x", action="app.deploy", target_type="app", target="web",
                               namespace="team-a", outcome="success", detail={}))  # fmt: skip
        await session.flush()
        as_admin = bearer((await signed_in(gateway, admin))["access_token"])
        as_owner = bearer((await signed_in(gateway, owner))["access_token"])
        as_viewer = bearer((await signed_in(gateway, viewer))["access_token"])
        everything = (await gateway.get("/api/v1/audit-events", headers=as_admin)).json()["items"]
        assert {e["action"] for e in everything} >= {"app.deploy", "auth.login"}
        mine = await gateway.get("/api/v1/audit-events", params={"namespace": "team-a"}, headers=as_owner)
        assert [e["action"] for e in mine.json()["items"]] == ["app.deploy"]
        assert (await gateway.get("/api/v1/audit-events", headers=as_owner)).status_code == 403
        denied = await gateway.get("/api/v1/audit-events", params={"namespace": "team-a"}, headers=as_viewer)
        assert denied.status_code == 403


class TestForwardedIdentity:
    async def test_upstream_gets_a_signed_identity_and_no_credentials(
        self, gateway: Client, session: AsyncSession
    ) -> None:
        user = await local_user(session)
        tokens = await signed_in(gateway, user)
        echo = (await gateway.get("/api/v1/namespaces/x/echo", headers=bearer(tokens["access_token"]))).json()
        headers = dict(echo["headers"])
        assert "authorization" not in headers
        claims = json.loads(base64.urlsafe_b64decode(headers[IDENTITY_HEADER].split(".")[1] + "=="))
        assert (claims["aud"], claims["typ"], claims["sub"]) == (
            "kepler:app-service",
            "identity",
            str(user.id),
        )
        assert "role" not in json.dumps(claims)

    async def test_a_forged_identity_header_never_reaches_upstream(self, gateway: Client) -> None:
        echo = (await gateway.get("/api/v1/namespaces/x/echo", headers={IDENTITY_HEADER: "forged"})).json()
        assert IDENTITY_HEADER not in dict(echo["headers"])

    async def test_invalid_token_stops_at_the_gateway(self, gateway: Client) -> None:
        response = await gateway.get("/api/v1/namespaces/x/echo", headers=bearer("garbage.token.here"))
        assert (response.status_code, response.headers["content-type"]) == (401, "application/problem+json")
        assert response.headers["www-authenticate"] == 'Bearer realm="kepler", error="invalid_token"'


class TestChallenge:
    """Issue #8 item 17: every 401 says how to authenticate (RFC 9110 §15.5.2), and says the token was
    the problem when one was presented (RFC 6750 §3.1)."""

    async def test_no_credentials_on_the_gateways_own_route(self, gateway: Client) -> None:
        response = await gateway.get("/api/v1/me")

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="kepler"'

    async def test_an_unknown_api_token_is_an_invalid_token(self, gateway: Client) -> None:
        for path in ("/api/v1/me", "/api/v1/namespaces/x/echo"):
            response = await gateway.get(path, headers=bearer("kpl_" + secrets.token_hex(16)))

            assert response.status_code == 401
            assert response.headers["www-authenticate"] == 'Bearer realm="kepler", error="invalid_token"'

    async def test_a_failed_login_challenges_too(self, gateway: Client, session: AsyncSession) -> None:
        response = await login(gateway, await local_user(session), "wrong password!!")

        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


def random_peer() -> tuple[str, int]:
    """A documentation-range IPv6 address of its own: per-IP limits live in Redis, shared with every
    other test (and every other run) for the whole window. Groups of four digits, none leading with 0: the
    canonical spelling, which is what Postgres (inet) hands back."""
    return f"2001:db8::{_group():x}:{_group():x}", 40000


def _group() -> int:
    return 0x1000 + secrets.randbelow(0xF000)


def identity_claims(echo: dict[str, Any]) -> dict[str, Any]:
    token = dict(echo["headers"])[IDENTITY_HEADER]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return claims


async def failed_login_ip(session: AsyncSession, email: str) -> str | None:
    event = await session.scalar(select(AuditEvent).where(AuditEvent.target == email))
    assert event is not None
    return str(event.client_ip) if event.client_ip is not None else None


class TestClientAddress:
    """Issue #8 item 15: X-Forwarded-For is believed only from configured proxies, and then only the
    rightmost hop none of them is; what a client writes itself changes nothing."""

    async def test_the_per_ip_login_limit_cannot_be_evaded_with_x_forwarded_for(
        self,
        settings: GatewaySettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
    ) -> None:
        limits = AuthSettings(login_attempts_per_ip=3, login_attempts_per_account=100)
        async with gateway_client(settings, sessionmaker, arq, limits, peer=random_peer()) as gateway:
            statuses = [
                (
                    await gateway.post(
                        "/api/v1/auth/login",
                        json={"email": f"nobody-{n}@example.com", "password": "guess guess guess"},
                        headers={"X-Forwarded-For": f"6.6.6.{n}"},
                    )
                ).status_code
                for n in range(4)
            ]

        assert statuses == [401, 401, 401, 429]

    async def test_audit_rows_and_the_upstreams_identity_carry_the_real_peer(
        self,
        settings: GatewaySettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        auth_settings: AuthSettings,
        session: AsyncSession,
    ) -> None:
        """The gateway's own rows (a failed login) and the signed identity every upstream audits with."""
        peer = random_peer()
        forged = {"X-Forwarded-For": "6.6.6.6, 7.7.7.7"}
        user = await local_user(session)
        async with gateway_client(settings, sessionmaker, arq, auth_settings, peer=peer) as gateway:
            await gateway.post(
                "/api/v1/auth/login", json={"email": user.email, "password": "wrong!!"}, headers=forged
            )
            tokens = await signed_in(gateway, user)
            echo = await gateway.get(
                "/api/v1/namespaces/x/echo", headers={**bearer(tokens["access_token"]), **forged}
            )

        assert await failed_login_ip(session, user.email) == peer[0]
        assert identity_claims(echo.json())["cip"] == peer[0]
        assert dict(echo.json()["headers"])["x-forwarded-for"] == peer[0]

    async def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client(
        self,
        settings: GatewaySettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        auth_settings: AuthSettings,
        session: AsyncSession,
    ) -> None:
        """A load balancer at 10.0.0.7 in front of the gateway, and another proxy of ours at 10.1.2.3:
        the client is 203.0.113.9; 6.6.6.6 is what the client itself claimed."""
        behind_lb = settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]})
        chain = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.2.3"}
        user = await local_user(session)
        async with gateway_client(
            behind_lb, sessionmaker, arq, auth_settings, peer=("10.0.0.7", 1)
        ) as gateway:
            await gateway.post(
                "/api/v1/auth/login", json={"email": user.email, "password": "wrong!!"}, headers=chain
            )
            tokens = await signed_in(gateway, user)
            echo = await gateway.get(
                "/api/v1/namespaces/x/echo", headers={**bearer(tokens["access_token"]), **chain}
            )

        assert await failed_login_ip(session, user.email) == "203.0.113.9"
        assert identity_claims(echo.json())["cip"] == "203.0.113.9"


class TestOidc:
    """Against an in-process OpenID provider over real HTTP: discovery, JWKS, authorize, token."""

    async def sign_in(self, client: Client) -> httpx.Response:
        start = await client.get("/api/v1/auth/oidc/login")
        assert start.status_code == 302, start.text
        authorize = start.headers["location"]
        query = dict(httpx.URL(authorize).params)
        assert query["code_challenge_method"] == "S256"
        assert {"state", "nonce", "code_challenge"} <= set(query)
        async with httpx.AsyncClient() as browser:  # the user's browser at the provider
            consent = await browser.get(authorize)
        assert consent.status_code == 302
        callback = httpx.URL(consent.headers["location"])
        return await client.get(f"{callback.path}?{callback.query.decode()}")

    @pytest.fixture
    async def provider(self) -> AsyncIterator[OidcProvider]:
        async with running_provider() as provider:
            yield provider

    @pytest.fixture
    def oidc_settings(self, provider: OidcProvider) -> AuthSettings:
        return AuthSettings(
            oidc_issuer=provider.url,
            oidc_client_id=provider.client_id,
            oidc_client_secret=provider.client_secret,
            oidc_group_claim="groups",
        )

    async def test_first_login_creates_the_user_and_signs_in(
        self,
        settings: GatewaySettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        session: AsyncSession,
        provider: OidcProvider,
        oidc_settings: AuthSettings,
        queue_name: str,
    ) -> None:
        provider.user = {**provider.user, "sub": "idp-42", "email": "oidc@example.com", "groups": ["devs"]}
        async with gateway_client(settings, sessionmaker, arq, oidc_settings) as client:
            response = await self.sign_in(client)
            assert response.status_code == 200, response.text
            me = await client.get("/api/v1/me", headers=bearer(response.json()["access_token"]))
        assert me.json()["email"] == "oidc@example.com"
        assert provider.token_requests[0]["code_verifier"]  # PKCE: the provider checked it
        user = await session.scalar(select(User).where(User.email == "oidc@example.com"))
        assert user is not None
        assert (user.oidc_subject, user.idp_groups) == ("idp-42", ["devs"])
        queued = [key.decode() for key in await arq.zrange(queue_name, 0, -1)]
        assert queued == [f"sync_idp_memberships:{user.id}"]

    async def test_a_wrong_nonce_is_refused(
        self,
        settings: GatewaySettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        provider: OidcProvider,
        oidc_settings: AuthSettings,
    ) -> None:
        provider.wrong_nonce = True
        async with gateway_client(settings, sessionmaker, arq, oidc_settings) as client:
            response = await self.sign_in(client)
        assert (response.status_code, response.headers["content-type"]) == (401, "application/problem+json")

    async def test_not_configured_is_404(self, gateway: Client) -> None:
        assert (await gateway.get("/api/v1/auth/oidc/login")).status_code == 404
