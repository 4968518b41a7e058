"""Who may do what in app-service, as callers see it: bad tokens, live roles, tenancy, audited denials."""

import asyncio
import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from arq.connections import ArqRedis
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import ApiToken, AuditEvent, AuthSession, Role, TokenScope, User
from kepler_kit.access import publish_access_change
from kepler_kit.identity import IDENTITY_HEADER
from kepler_kit.testing.identities import Minter, make_member, make_user

SERVICE = "app-service"


@pytest.fixture
async def team(client: httpx.AsyncClient, session: AsyncSession) -> dict[str, User]:
    """team-a (with app `web`) and team-b, with one member per role in team-a."""
    for name in ("team-a", "team-b"):
        assert (await client.post("/api/v1/namespaces", json={"name": name})).status_code == 201
    body = {"name": "web", "git_url": "https://g.example/web.git"}
    assert (await client.post("/api/v1/namespaces/team-a/apps", json=body)).status_code == 201
    users = {}
    for role in Role:
        users[role.value] = await make_user(session, f"{role.value}@example.com")
        await make_member(session, users[role.value], "team-a", role)
    users["outsider"] = await make_user(session, "outsider@example.com")
    await make_member(session, users["outsider"], "team-b", Role.owner)
    return users


def forge(claims: dict[str, object], header: dict[str, object], key: ECKey | None = None) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    if key is None:
        return f"{part(header)}.{part(claims)}."
    return jwt.encode(header, claims, key, algorithms=["ES256"])


def identity_claims(user: User, **override: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "kepler",
        "aud": f"kepler:{SERVICE}",
        "sub": str(user.id),
        "typ": "identity",
    }
    return claims | {"exp": now + 60, "iat": now} | override


async def get_as(client: httpx.AsyncClient, token: str, path: str = "/api/v1/namespaces/team-a") -> int:
    response = await client.get(path, headers={IDENTITY_HEADER: token})
    return response.status_code


class TestBadTokens:
    async def test_unauthenticated_is_401_problem(self, anonymous_client: httpx.AsyncClient) -> None:
        response = await anonymous_client.get("/api/v1/namespaces")
        assert (response.status_code, response.headers["content-type"]) == (401, "application/problem+json")

    async def test_401s_carry_a_bearer_challenge(
        self, anonymous_client: httpx.AsyncClient, team: dict[str, User], minter: Minter
    ) -> None:
        """Issue #8 item 17 (RFC 9110 §15.5.2, RFC 6750 §3): a client learns how to authenticate, and
        that its token was the problem when it sent one."""
        missing = await anonymous_client.get("/api/v1/namespaces")
        expired = await anonymous_client.get(
            "/api/v1/namespaces", headers=minter.identity(team["owner"], SERVICE, ttl=-10)
        )

        assert missing.headers["www-authenticate"] == 'Bearer realm="kepler"'
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"] == 'Bearer realm="kepler", error="invalid_token"'

    async def test_attacks_are_401(
        self, anonymous_client: httpx.AsyncClient, team: dict[str, User], minter: Minter
    ) -> None:
        owner = team["owner"]
        signing_key = minter.issuer.keyring.signing_key
        assert signing_key is not None
        assert signing_key.kid is not None

        kid = signing_key.kid
        stranger_key = ECKey.generate_key("P-256", parameters={"kid": kid})

        good = minter.identity(owner, SERVICE)[IDENTITY_HEADER]
        head, payload, signature = good.split(".")
        tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        tampered_claims["sub"] = str(team["outsider"].id)
        tampered = ".".join((head, forge(tampered_claims, {}).split(".")[1], signature))
        attacks = {
            "alg none": forge(identity_claims(owner), {"alg": "none", "kid": kid}),
            "wrong key": forge(identity_claims(owner), {"alg": "ES256", "kid": kid}, stranger_key),
            "expired": minter.identity(owner, SERVICE, ttl=-10)[IDENTITY_HEADER],
            "wrong audience": minter.identity(owner, "build-service")[IDENTITY_HEADER],
            "tampered payload": tampered,
            "garbage": "not.a.jwt",
        }
        for name, token in attacks.items():
            assert await get_as(anonymous_client, token) == 401, name

    async def test_wrong_issuer_is_401(
        self, anonymous_client: httpx.AsyncClient, team: dict[str, User], minter: Minter
    ) -> None:
        key = minter.issuer.keyring.signing_key
        assert key is not None
        token = forge(identity_claims(team["owner"], iss="evil"), {"alg": "ES256", "kid": key.kid}, key)
        assert await get_as(anonymous_client, token) == 401

    async def test_access_token_presented_directly_is_accepted(
        self, anonymous_client: httpx.AsyncClient, team: dict[str, User], minter: Minter
    ) -> None:
        response = await anonymous_client.get(
            "/api/v1/namespaces/team-a", headers=minter.access(team["viewer"])
        )
        assert response.status_code == 200


class TestLiveRoles:
    async def test_removed_member_loses_access_at_once(
        self,
        anonymous_client: httpx.AsyncClient,
        client: httpx.AsyncClient,
        team: dict[str, User],
        minter: Minter,
    ) -> None:
        viewer = minter.identity(team["viewer"], SERVICE)
        assert (await anonymous_client.get("/api/v1/namespaces/team-a", headers=viewer)).status_code == 200
        removed = await client.delete(f"/api/v1/namespaces/team-a/members/{team['viewer'].id}")
        assert removed.status_code == 204
        assert await eventually_status(anonymous_client, viewer, 404)

    async def test_disabled_user_is_401_at_once(
        self,
        anonymous_client: httpx.AsyncClient,
        team: dict[str, User],
        minter: Minter,
        session: AsyncSession,
        arq: ArqRedis,
    ) -> None:
        owner = minter.identity(team["owner"], SERVICE)
        assert (await anonymous_client.get("/api/v1/namespaces/team-a", headers=owner)).status_code == 200
        await session.execute(
            update(User).where(User.id == team["owner"].id).values(disabled_at=datetime.now(UTC))
        )
        await session.commit()
        await publish_access_change(arq, f"user:{team['owner'].id}")
        assert await eventually_status(anonymous_client, owner, 401)

    async def test_revoked_session_and_api_token_are_401(
        self,
        anonymous_client: httpx.AsyncClient,
        team: dict[str, User],
        minter: Minter,
        session: AsyncSession,
        arq: ArqRedis,
    ) -> None:
        user = team["developer"]
        login = AuthSession(
            user_id=user.id, method="password", expires_at=datetime.now(UTC) + timedelta(hours=1)
        )
        token = ApiToken(
            user_id=user.id, name="ci", prefix="kpl_x", token_hash="0" * 64, scope=TokenScope.read
        )
        session.add_all([login, token])
        await session.flush()
        callers = [
            minter.access(user, session_id=login.id),
            minter.identity(user, SERVICE, scope=TokenScope.read, token_id=token.id),
        ]
        for headers in callers:
            assert (
                await anonymous_client.get("/api/v1/namespaces/team-a", headers=headers)
            ).status_code == 200
        login.revoked_at = token.revoked_at = datetime.now(UTC)
        await session.commit()
        await publish_access_change(arq, f"session:{login.id}", f"token:{token.id}")
        for headers in callers:
            assert await eventually_status(anonymous_client, headers, 401)


async def eventually_status(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> bool:
    """The invalidation travels through Redis pub/sub: give it a few milliseconds."""
    for _ in range(100):
        if (await client.get("/api/v1/namespaces/team-a", headers=headers)).status_code == status:
            return True
        await asyncio.sleep(0.01)
    return False


class TestTenancy:
    async def test_other_namespace_objects_are_404_not_403(
        self, anonymous_client: httpx.AsyncClient, team: dict[str, User], minter: Minter
    ) -> None:
        outsider = minter.identity(team["outsider"], SERVICE)
        for path in (
            "/api/v1/namespaces/team-a",
            "/api/v1/namespaces/team-a/apps/web",
            "/api/v1/namespaces/nope",
        ):
            response = await anonymous_client.get(path, headers=outsider)
            assert response.status_code == 404, path
        listed = (await anonymous_client.get("/api/v1/namespaces", headers=outsider)).json()
        assert [ns["name"] for ns in listed["items"]] == ["team-b"]

    async def test_viewer_cannot_mutate_anything(
        self, anonymous_client: httpx.AsyncClient, team: dict[str, User], minter: Minter
    ) -> None:
        viewer = minter.identity(team["viewer"], SERVICE)
        calls = [
            ("post", "/api/v1/namespaces/team-a/apps", {"name": "api", "git_url": "https://g.example/a.git"}),
            ("patch", "/api/v1/namespaces/team-a/apps/web", {"description": "x"}),
            ("delete", "/api/v1/namespaces/team-a/apps/web?confirm=web", None),
            ("patch", "/api/v1/namespaces/team-a", {"allow_exec": True}),
            ("post", "/api/v1/namespaces/team-a/members", {"email": "x@example.com", "role": "owner"}),
            ("delete", "/api/v1/namespaces/team-a", None),
        ]
        for method, path, body in calls:
            response = await anonymous_client.request(method, path, json=body, headers=viewer)
            assert response.status_code == 403, (method, path)

    async def test_token_restricted_to_a_namespace(
        self,
        anonymous_client: httpx.AsyncClient,
        team: dict[str, User],
        minter: Minter,
        session: AsyncSession,
    ) -> None:
        await make_member(session, team["owner"], "team-b", Role.viewer)
        token = minter.identity(team["owner"], SERVICE, scope=TokenScope.admin, namespace="team-b")
        assert (await anonymous_client.get("/api/v1/namespaces/team-a", headers=token)).status_code == 404
        assert (await anonymous_client.get("/api/v1/namespaces/team-b", headers=token)).status_code == 200

    async def test_namespace_token_lists_its_one_namespace(
        self,
        anonymous_client: httpx.AsyncClient,
        team: dict[str, User],
        minter: Minter,
        session: AsyncSession,
        admin: User,
    ) -> None:
        """A token confined to a namespace lists that namespace (not 403), and only it: the confinement
        narrows the list, it does not forbid it. Other platform-level actions stay forbidden to it."""
        await make_member(session, team["owner"], "team-b", Role.viewer)
        token = minter.identity(team["owner"], SERVICE, scope=TokenScope.read, namespace="team-b")
        response = await anonymous_client.get("/api/v1/namespaces", headers=token)
        assert response.status_code == 200, response.text
        assert [ns["name"] for ns in response.json()["items"]] == ["team-b"]

        confined_admin = minter.identity(admin, SERVICE, scope=TokenScope.admin, namespace="team-a")
        listed = await anonymous_client.get("/api/v1/namespaces", headers=confined_admin)
        assert [ns["name"] for ns in listed.json()["items"]] == ["team-a"]
        created = await anonymous_client.post(
            "/api/v1/namespaces", json={"name": "team-c"}, headers=confined_admin
        )
        assert created.status_code == 403

    async def test_namespace_token_of_a_former_member_lists_nothing(
        self, anonymous_client: httpx.AsyncClient, team: dict[str, User], minter: Minter
    ) -> None:
        """The token names team-b, but its user is not (or no longer) a member there."""
        token = minter.identity(team["owner"], SERVICE, scope=TokenScope.read, namespace="team-b")
        response = await anonymous_client.get("/api/v1/namespaces", headers=token)
        assert (response.status_code, response.json()["items"]) == (200, [])

    async def test_denials_are_audited(
        self,
        anonymous_client: httpx.AsyncClient,
        team: dict[str, User],
        minter: Minter,
        session: AsyncSession,
    ) -> None:
        viewer = minter.identity(team["viewer"], SERVICE)
        await anonymous_client.delete(
            "/api/v1/namespaces/team-a", headers={**viewer, "x-request-id": "deny-1"}
        )
        event = await session.scalar(select(AuditEvent).where(AuditEvent.request_id == "deny-1"))
        assert event is not None
        assert (event.action, event.outcome, event.actor) == (
            "namespace.delete",
            "denied",
            "viewer@example.com",
        )


class TestMembers:
    async def test_last_owner_cannot_leave_or_be_demoted(
        self, client: httpx.AsyncClient, team: dict[str, User]
    ) -> None:
        admin_id = (await client.get("/api/v1/namespaces/team-a/members")).json()
        owners = [m for m in admin_id["items"] if m["role"] == "owner"]
        assert len(owners) == 2  # the admin who created it, and `owner`
        first, second = owners
        assert (
            await client.delete(f"/api/v1/namespaces/team-a/members/{first['user_id']}")
        ).status_code == 204
        last = f"/api/v1/namespaces/team-a/members/{second['user_id']}"
        assert (await client.delete(last)).status_code == 409
        assert (await client.patch(last, json={"role": "viewer"})).status_code == 409

    async def test_add_by_email_and_change_role(
        self, client: httpx.AsyncClient, team: dict[str, User]
    ) -> None:
        added = await client.post(
            "/api/v1/namespaces/team-b/members", json={"email": "Viewer@Example.com", "role": "developer"}
        )
        assert added.status_code == 201
        assert added.json()["role"] == "developer"
        again = await client.post(
            "/api/v1/namespaces/team-b/members", json={"email": "viewer@example.com", "role": "owner"}
        )
        assert again.status_code == 409
        unknown = await client.post(
            "/api/v1/namespaces/team-b/members", json={"email": "who@example.com", "role": "viewer"}
        )
        # 422 on the field, not 404: the namespace (the request's target) exists (Schemathesis read a 404
        # here as "the namespace just created is not found")
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["loc"] == ["body", "email"]
        changed = await client.patch(
            f"/api/v1/namespaces/team-b/members/{team['viewer'].id}", json={"role": "maintainer"}
        )
        assert changed.json()["role"] == "maintainer"

    async def test_unknown_member_is_404(self, client: httpx.AsyncClient, team: dict[str, User]) -> None:
        assert (await client.delete(f"/api/v1/namespaces/team-a/members/{uuid.uuid4()}")).status_code == 404
