"""Users, memberships and tokens for tests, minted exactly as the gateway mints them."""

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import Membership, Namespace, Role, TokenScope, User
from kepler_kit.crypto import SecretBox
from kepler_kit.identity import IDENTITY_HEADER
from kepler_kit.tokens import ACCESS_AUDIENCE, Claims, KeyRing, TokenIssuer, identity_audience

TEST_SECRET = "kepler-test-secret-key-0123456789abcdef"


async def make_user(session: AsyncSession, email: str, *, is_admin: bool = False) -> User:
    user = User(email=email, display_name=email.split("@")[0], is_admin=is_admin)
    session.add(user)
    await session.flush()
    return user


async def make_member(session: AsyncSession, user: User, namespace: str, role: Role) -> None:
    namespace_id = await session.scalar(select(Namespace.id).where(Namespace.name == namespace))
    session.add(Membership(user_id=user.id, namespace_id=namespace_id, role=role))
    await session.flush()


@dataclass
class Minter:
    issuer: TokenIssuer

    def identity(
        self,
        user: User,
        service: str,
        *,
        scope: TokenScope | None = None,
        token_id: uuid.UUID | None = None,
        namespace: str | None = None,
        ttl: int = 60,
        client_ip: str | None = None,
    ) -> dict[str, str]:
        claims = Claims(
            sub=user.id,
            typ="identity",
            aud=identity_audience(service),
            exp=int(time.time()) + ttl,
            name=user.email,
            tid=token_id,
            scope=scope,
            token_namespace=namespace,
            client_ip=client_ip,
        )
        return {IDENTITY_HEADER: self.issuer.issue(claims)}

    def access(self, user: User, *, session_id: uuid.UUID | None = None, ttl: int = 300) -> dict[str, str]:
        claims = Claims(
            sub=user.id,
            typ="access",
            aud=ACCESS_AUDIENCE,
            exp=int(time.time()) + ttl,
            name=user.email,
            sid=session_id,
        )
        return {"authorization": f"Bearer {self.issuer.issue(claims)}"}


async def make_minter(sessionmaker: async_sessionmaker[AsyncSession], secret: str = TEST_SECRET) -> Minter:
    keyring = KeyRing(sessionmaker, SecretBox(secret, "signing-keys"))
    await keyring.ensure_signing_key()
    return Minter(TokenIssuer(keyring))
