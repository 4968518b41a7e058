"""Sign in with any OpenID Connect provider (GitLab, Keycloak, Dex, Google…), configured by issuer URL.

authlib's Starlette client does the authorization-code flow with PKCE (S256), state and nonce, and
validates the ID token against the provider's JWKS. The first login creates the user; the group claim,
when configured, is recorded for app-service to turn into namespace roles.
"""

import urllib.parse
from typing import Any

from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from joserfc.errors import JoseError
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import models
from kepler_gateway.identity import repository, service
from kepler_gateway.identity.schemas import TokenPair
from kepler_gateway.identity.settings import AuthSettings
from kepler_kit.access import public
from kepler_kit.contracts import SyncIdpMemberships, enqueue_contract
from kepler_kit.db import DbSession
from kepler_kit.errors import NotFound, Unauthorized, error_responses
from kepler_kit.identity import client_ip

router = APIRouter(prefix="/api/v1/auth/oidc", tags=["auth"])


def oidc_client(settings: AuthSettings) -> StarletteOAuth2App | None:
    if not settings.oidc_enabled:
        return None
    oauth = OAuth()
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
    issuer = str(settings.oidc_issuer).rstrip("/")
    client: StarletteOAuth2App = oauth.register(
        "kepler",
        client_id=settings.oidc_client_id,
        client_secret=secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256"},
    )
    return client


def _client(request: Request) -> StarletteOAuth2App:
    client: StarletteOAuth2App | None = request.state.oidc
    if client is None:
        raise NotFound("Sign-in with an identity provider is not configured.")
    return client


@router.get(
    "/login",
    status_code=302,
    responses={302: {"description": "To the identity provider"}, **error_responses(NotFound)},
    summary="Start signing in with the identity provider",
)
async def oidc_login(request: Request, _: None = public()) -> Response:
    client = _client(request)
    redirect: Response = await client.authorize_redirect(request, str(request.url_for("oidc_callback")))
    return redirect


@router.get(
    "/callback",
    response_model=TokenPair,
    responses={
        302: {"description": "To the SPA, tokens in the fragment"},
        **error_responses(Unauthorized, NotFound),
    },
    summary="Where the identity provider sends the browser back",
)
async def oidc_callback(request: Request, session: DbSession, _: None = public()) -> TokenPair | Response:
    client = _client(request)
    try:
        token: dict[str, Any] = await client.authorize_access_token(request)
    except OAuthError as exc:
        raise Unauthorized(f"The identity provider did not sign you in: {exc.error}.") from exc
    except JoseError as exc:  # the ID token failed validation (signature, nonce, audience, expiry…)
        raise Unauthorized(f"The identity provider's ID token was not valid: {exc.error}.") from exc
    settings: AuthSettings = request.state.auth_settings
    user = await _user_for(session, token["userinfo"], settings)
    auth = service.Auth(issuer=request.state.issuer, redis=request.state.arq, settings=settings)
    tokens = await service.start_session(
        session, auth, user, "oidc", client_ip(request), request.headers.get("user-agent")
    )
    if settings.oidc_post_login_redirect:
        fragment = urllib.parse.urlencode(tokens.model_dump())
        return RedirectResponse(f"{settings.oidc_post_login_redirect}#{fragment}", status_code=302)
    return tokens


async def _user_for(session: AsyncSession, info: dict[str, Any], settings: AuthSettings) -> models.User:
    """Found by (issuer, subject); linked to an existing local account only by a verified email."""
    issuer, subject = str(info["iss"]), str(info["sub"])
    email = str(info.get("email") or "")
    user = await repository.user_by_oidc(session, issuer, subject)
    if user is None and email and info.get("email_verified") is True:
        user = await repository.user_by_email(session, email)
        if user is not None and user.oidc_subject is not None:
            user = None  # already linked to another identity: never re-link silently
    if user is None:
        if not email:
            raise Unauthorized("The identity provider did not share an email address.")
        if await repository.user_by_email(session, email):
            raise Unauthorized("An account with this email exists; sign in with it and link the provider.")
        user = models.User(email=email, display_name=str(info.get("name") or email.split("@")[0]))
        session.add(user)
    user.oidc_issuer, user.oidc_subject = issuer, subject
    if user.disabled_at is not None:
        raise Unauthorized("The account is disabled.")
    await _record_groups(session, user, info, settings)
    return user


async def _record_groups(
    session: AsyncSession, user: models.User, info: dict[str, Any], settings: AuthSettings
) -> None:
    if not settings.oidc_group_claim:
        return
    groups = info.get(settings.oidc_group_claim) or []
    user.idp_groups = sorted({str(g) for g in groups}) if isinstance(groups, list) else []
    await session.flush()
    enqueue_contract(session, SyncIdpMemberships(user_id=user.id))
