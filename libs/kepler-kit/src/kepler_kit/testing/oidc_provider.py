"""An in-process OpenID Connect provider on a loopback port: discovery, JWKS, authorize, token, userinfo.

It behaves as a strict provider would: codes are single-use and bound to the redirect URI, PKCE (S256)
is checked against the code verifier, the client must authenticate, and the ID token carries the nonce
the client sent. Tests can change who signs in and inject a wrong nonce.
"""

import base64
import hashlib
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    subject: dict[str, Any]


@dataclass
class OidcProvider:
    client_id: str = "kepler"
    client_secret: str = "kepler-secret"
    user: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "u-1",
            "email": "dev@example.com",
            "email_verified": True,
            "name": "Dev",
        }
    )
    wrong_nonce: bool = False
    url: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "op-1"}))
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        app.router.add_get("/userinfo", self.userinfo)
        return app

    async def discovery(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "userinfo_endpoint": f"{self.url}/userinfo",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            }
        )

    async def jwks(self, _: web.Request) -> web.Response:
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: web.Request) -> web.Response:
        """Consents at once, as if the user had signed in at the provider."""
        q = request.query
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return web.json_response({"error": "invalid_request"}, status=400)
        code = secrets.token_urlsafe(16)
        challenge = q.get("code_challenge") if q.get("code_challenge_method") == "S256" else None
        self.grants[code] = Grant(
            self.client_id, q["redirect_uri"], q.get("nonce"), challenge, dict(self.user)
        )
        query = urllib.parse.urlencode({"code": code, "state": q.get("state", "")})
        raise web.HTTPFound(f"{q['redirect_uri']}?{query}")

    async def token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(form)
        grant = self.grants.pop(form.get("code", ""), None)
        if (
            grant is None
            or grant.redirect_uri != form.get("redirect_uri")
            or not self._client_ok(request, form)
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        if grant.challenge is not None and _s256(form.get("code_verifier", "")) != grant.challenge:
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE"}, status=400)
        return web.json_response(
            {
                "access_token": "at-" + secrets.token_hex(8),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self._id_token(grant),
            }
        )

    async def userinfo(self, _: web.Request) -> web.Response:
        return web.json_response(self.user)

    def _client_ok(self, request: web.Request, form: dict[str, str]) -> bool:
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            return (urllib.parse.unquote(user), urllib.parse.unquote(password)) == (
                self.client_id,
                self.client_secret,
            )
        return (form.get("client_id"), form.get("client_secret")) == (self.client_id, self.client_secret)

    def _id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": grant.client_id, "iat": now, "exp": now + 300, **grant.subject}
        if grant.nonce:
            claims["nonce"] = "not-the-nonce" if self.wrong_nonce else grant.nonce
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key, algorithms=["RS256"])


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


@asynccontextmanager
async def running_provider(provider: OidcProvider | None = None) -> AsyncIterator[OidcProvider]:
    provider = provider or OidcProvider()
    runner = web.AppRunner(provider.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    provider.url = f"http://127.0.0.1:{port}"
    try:
        yield provider
    finally:
        await runner.cleanup()
