"""Signed tokens: access tokens for clients, identity tokens from the gateway to one service.

Keys are ES256 pairs in `signing_keys`; every service reads the public halves and verifies locally, only
the gateway can unseal a private half. Verified tokens are cached until they expire, so the signature
cost is paid once per token, not once per request.
"""

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import SigningKey, TokenScope
from kepler_kit.crypto import SecretBox
from kepler_kit.errors import InvalidToken

ALGORITHM = "ES256"
ISSUER = "kepler"
ACCESS_AUDIENCE = "kepler:api"
KEY_GRACE = timedelta(days=1)  # a retired key still verifies tokens signed just before it was retired


def identity_audience(service: str) -> str:
    return f"kepler:{service}"


@dataclass(frozen=True)
class Claims:
    sub: uuid.UUID
    typ: str
    aud: str
    exp: int
    name: str = ""
    sid: uuid.UUID | None = None
    tid: uuid.UUID | None = None
    scope: TokenScope | None = None
    token_namespace: str | None = None
    client_ip: str | None = None  # identity tokens: the client's address as the gateway resolved it

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> "Claims":
        return cls(
            sub=uuid.UUID(raw["sub"]),
            typ=raw["typ"],
            aud=raw["aud"],
            exp=int(raw["exp"]),
            name=raw.get("name", ""),
            sid=uuid.UUID(raw["sid"]) if raw.get("sid") else None,
            tid=uuid.UUID(raw["tid"]) if raw.get("tid") else None,
            scope=TokenScope(raw["scp"]) if raw.get("scp") else None,
            token_namespace=raw.get("tns"),
            client_ip=raw.get("cip"),
        )

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"sub": str(self.sub), "typ": self.typ, "aud": self.aud, "exp": self.exp}
        optional = {
            "name": self.name,
            "sid": self.sid,
            "tid": self.tid,
            "scp": self.scope,
            "tns": self.token_namespace,
            "cip": self.client_ip,
        }
        raw.update({k: str(v) for k, v in optional.items() if v})
        return raw


class KeyRing:
    """The public keys every service verifies with; the gateway also holds the newest private key."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox | None = None) -> None:
        self._sessionmaker, self._box = sessionmaker, box
        self.keyset = KeySet([])
        self.signing_key: ECKey | None = None
        self._loaded_at = 0.0

    async def load(self) -> None:
        async with self._sessionmaker() as session:
            rows = list(await session.scalars(_usable_keys()))
        self.keyset = KeySet([ECKey.import_key(row.public_jwk) for row in rows])
        if self._box is not None:
            self.signing_key = self._newest_openable([row for row in rows if row.retired_at is None])
        self._loaded_at = time.monotonic()

    def _newest_openable(self, active: list[SigningKey]) -> ECKey | None:
        """A key sealed under another platform key (a misconfigured replica) is skipped, not fatal."""
        assert self._box is not None  # noqa: S101  (the caller checked; narrows the type)
        for row in active:
            try:
                return ECKey.import_key(json.loads(self._box.open(row.private_jwk_encrypted)))
            except InvalidTag:
                continue
        return None

    async def knows(self, kid: str) -> bool:
        """An unknown kid may be a key made since we loaded: reload, but at most every few seconds."""
        if any(key.kid == kid for key in self.keyset.keys):
            return True
        if time.monotonic() - self._loaded_at > 5:
            await self.load()
        return any(key.kid == kid for key in self.keyset.keys)

    async def ensure_signing_key(self) -> None:
        """Gateway start-up: make the first key if there is none yet."""
        await self.load()
        if self.signing_key is not None or self._box is None:
            return
        key = ECKey.generate_key(
            "P-256", parameters={"kid": uuid.uuid4().hex, "use": "sig", "alg": ALGORITHM}
        )
        async with self._sessionmaker() as session, session.begin():
            session.add(_key_row(key, self._box))
        await self.load()


def _usable_keys() -> Any:
    cutoff = datetime.now(UTC) - KEY_GRACE
    query = select(SigningKey).where(or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > cutoff))
    return query.order_by(SigningKey.created_at.desc())


def _key_row(key: ECKey, box: SecretBox) -> SigningKey:
    private = json.dumps(key.as_dict(private=True)).encode()
    return SigningKey(
        kid=key.kid,
        algorithm=ALGORITHM,
        public_jwk=key.as_dict(private=False),
        private_jwk_encrypted=box.seal(private),
    )


class TokenVerifier:
    def __init__(self, keyring: KeyRing, issuer: str = ISSUER, cache_size: int = 20_000) -> None:
        self.keyring, self.issuer, self._cache_size = keyring, issuer, cache_size
        self._cache: dict[str, Claims] = {}

    async def verify(self, token: str, audience: str, typ: str) -> Claims:
        claims = self._cache.get(token)
        if claims is None:
            claims = await self._verify(token)
            self._remember(token, claims)
        if claims.exp <= time.time():
            self._cache.pop(token, None)
            raise InvalidToken("The token has expired.")
        if claims.aud != audience or claims.typ != typ:
            raise InvalidToken("The token is not meant for this service.")
        return claims

    async def _verify(self, token: str) -> Claims:
        try:
            kid = jws.extract_compact(token.encode()).headers().get("kid", "")
            if not await self.keyring.knows(str(kid)):
                raise InvalidToken("The token was signed by an unknown key.")
            decoded = jwt.decode(token, self.keyring.keyset, algorithms=[ALGORITHM])
            registry = jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                exp={"essential": True},
                sub={"essential": True},
                aud={"essential": True},
                typ={"essential": True},
            )
            registry.validate(decoded.claims)
            return Claims.parse(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise InvalidToken("The token is not valid.") from exc

    def _remember(self, token: str, claims: Claims) -> None:
        if len(self._cache) >= self._cache_size:
            now = time.time()
            self._cache = {t: c for t, c in self._cache.items() if c.exp > now}
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
        self._cache[token] = claims


class TokenIssuer:
    """Signs tokens with the key ring's private key (the gateway only)."""

    def __init__(self, keyring: KeyRing, issuer: str = ISSUER) -> None:
        self.keyring, self.issuer = keyring, issuer

    def issue(self, claims: Claims) -> str:
        key = self.keyring.signing_key
        if key is None:
            raise RuntimeError("no signing key loaded")
        now = int(time.time())
        payload = {**claims.to_raw(), "iss": self.issuer, "iat": now, "nbf": now - 5, "jti": uuid.uuid4().hex}
        return jwt.encode(
            {"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}, payload, key, algorithms=[ALGORITHM]
        )
