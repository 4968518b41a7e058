"""Logins, sessions with rotating refresh tokens, API tokens, users. Flushes, never commits.

Outcomes that must be recorded even though the caller gets an error (a failed login, a reused refresh
token revoking its whole session) are *returned* as errors, so the request's transaction still commits.
"""

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import models
from kepler_gateway.identity import passwords, ratelimit, repository
from kepler_gateway.identity.schemas import (
    ApiToken,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenPage,
    AuditEvent,
    AuditEventPage,
    LoginRequest,
    Me,
    Membership,
    PasswordChange,
    TokenPair,
    User,
    UserCreate,
    UserPage,
    UserUpdate,
)
from kepler_gateway.identity.settings import AuthSettings
from kepler_kit.access import publish_access_change
from kepler_kit.audit import record_audit
from kepler_kit.contracts import GATEWAY
from kepler_kit.crypto import new_token, token_digest
from kepler_kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    KeplerError,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from kepler_kit.identity import Principal
from kepler_kit.jobs import after_commit
from kepler_kit.pagination import PageRequest, page_of
from kepler_kit.tokens import ACCESS_AUDIENCE, API_TOKEN_PREFIX, Claims, TokenIssuer

REFRESH_PREFIX = "kpr_"


@dataclass(frozen=True)
class Auth:
    """What the identity use cases need besides the session: signing, limits, settings."""

    issuer: TokenIssuer
    redis: ArqRedis
    settings: AuthSettings


def _audit(session: AsyncSession, who: Principal, action: str, target: str, **fields: Any) -> None:
    record_audit(session, who, service=GATEWAY, action=action, target_type="user", target=target, **fields)


def _publish(session: AsyncSession, *messages: str) -> None:
    async def publish(redis: ArqRedis) -> None:
        await publish_access_change(redis, *messages)

    after_commit(session, publish)


def _as(user: models.User, ip: str | None) -> Principal:
    return Principal(user_id=user.id, name=user.email, is_admin=user.is_admin, client_ip=ip)


# --- sessions ------------------------------------------------------------------------------------


def access_token(auth: Auth, user: models.User, session_id: uuid.UUID) -> str:
    exp = int(time.time()) + auth.settings.access_token_seconds
    claims = Claims(sub=user.id, typ="access", aud=ACCESS_AUDIENCE, exp=exp, name=user.email, sid=session_id)
    return auth.issuer.issue(claims)


def _new_refresh(session: AsyncSession, session_id: uuid.UUID) -> str:
    raw = new_token(REFRESH_PREFIX)
    session.add(models.RefreshToken(session_id=session_id, token_hash=token_digest(raw)))
    return raw


async def start_session(
    session: AsyncSession, auth: Auth, user: models.User, method: str, ip: str | None, agent: str | None
) -> TokenPair:
    expires = datetime.now(UTC) + timedelta(days=auth.settings.session_days)
    login = models.AuthSession(
        user_id=user.id, method=method, expires_at=expires, client_ip=ip, user_agent=(agent or "")[:512]
    )
    session.add(login)
    await session.flush()
    refresh = _new_refresh(session, login.id)
    user.last_login_at = datetime.now(UTC)
    await session.flush()
    _audit(
        session, _as(user, ip), "auth.login", user.email, detail={"method": method, "session": str(login.id)}
    )
    return TokenPair(
        access_token=access_token(auth, user, login.id),
        expires_in=auth.settings.access_token_seconds,
        refresh_token=refresh,
    )


async def login(
    session: AsyncSession, auth: Auth, data: LoginRequest, ip: str | None, agent: str | None
) -> TokenPair | KeplerError:
    limits = auth.settings
    account_key = f"login:account:{data.email.lower()}"
    await ratelimit.hit(
        auth.redis, f"login:ip:{ip}", limits.login_attempts_per_ip, limits.limit_window_seconds
    )
    await ratelimit.peek(
        auth.redis, account_key, limits.login_attempts_per_account, limits.limit_window_seconds
    )
    user = await repository.user_by_email(session, data.email)
    password_ok = await passwords.verify_password(
        user.password_hash if user else None, data.password.get_secret_value()
    )
    if user is None or not password_ok or user.disabled_at is not None:
        await ratelimit.hit(auth.redis, account_key, 10**9, limits.limit_window_seconds)
        who = Principal(user_id=user.id if user else None, name=data.email.lower(), client_ip=ip)
        _audit(session, who, "auth.login", data.email.lower(), outcome=models.AuditOutcome.failed)
        return Unauthorized("Wrong email or password, or the account is disabled.")
    return await start_session(session, auth, user, "password", ip, agent)


async def refresh(session: AsyncSession, auth: Auth, raw: str, ip: str | None) -> TokenPair | KeplerError:
    limits = auth.settings
    await ratelimit.hit(
        auth.redis, f"token:ip:{ip}", limits.token_requests_per_ip, limits.limit_window_seconds
    )
    link = await repository.refresh_token_for_update(session, token_digest(raw))
    if link is None:
        return Unauthorized("Unknown refresh token.")
    login = await session.get(models.AuthSession, link.session_id, with_for_update=True)
    user = await session.get(models.User, login.user_id) if login else None
    if login is None or user is None:
        return Unauthorized("Unknown refresh token.")
    if link.used_at is not None:
        return _reuse_detected(session, login, user, ip)
    if login.revoked_at is not None or login.expires_at <= datetime.now(UTC) or user.disabled_at is not None:
        return Unauthorized("The session has ended; sign in again.")
    link.used_at = login.last_used_at = datetime.now(UTC)
    new_refresh = _new_refresh(session, login.id)
    await session.flush()
    return TokenPair(
        access_token=access_token(auth, user, login.id),
        expires_in=auth.settings.access_token_seconds,
        refresh_token=new_refresh,
    )


def _reuse_detected(
    session: AsyncSession, login: models.AuthSession, user: models.User, ip: str | None
) -> KeplerError:
    """A rotated token came back: someone holds a copy. End the whole session (RFC 9700 §4.14.2)."""
    if login.revoked_at is None:
        login.revoked_at, login.revoked_reason = datetime.now(UTC), "refresh_token_reuse"
    _audit(session, _as(user, ip), "auth.refresh_reuse", user.email, outcome=models.AuditOutcome.denied)
    _publish(session, f"session:{login.id}")
    return Unauthorized("This refresh token was already used; the session has been ended.")


async def logout(session: AsyncSession, who: Principal) -> None:
    if who.session_id is None:
        raise BadRequest("Only a signed-in session can log out; revoke API tokens instead.")
    login = await session.get(models.AuthSession, who.session_id, with_for_update=True)
    if login is not None and login.revoked_at is None:
        login.revoked_at, login.revoked_reason = datetime.now(UTC), "logout"
    _audit(session, who, "auth.logout", who.name)
    _publish(session, f"session:{who.session_id}")


# --- the signed-in user --------------------------------------------------------------------------


async def me(session: AsyncSession, who: Principal) -> Me:
    user = await _user(session, who)
    rows = await repository.memberships(session, user.id)
    return Me(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        is_admin=user.is_admin,
        memberships=[Membership(namespace=name, role=role) for name, role in rows],
    )


async def _user(session: AsyncSession, who: Principal) -> models.User:
    user = await session.get(models.User, who.user_id) if who.user_id else None
    if user is None:
        raise Unauthorized("The account no longer exists.")
    return user


async def change_password(session: AsyncSession, who: Principal, data: PasswordChange) -> None:
    if who.session_id is None:
        raise Forbidden("Change your password from a signed-in session, not with an API token.")
    user = await _user(session, who)
    if not await passwords.verify_password(user.password_hash, data.current_password.get_secret_value()):
        raise Forbidden("The current password is wrong.")
    user.password_hash = await _checked_hash(data.new_password.get_secret_value(), user.email)
    ended = await repository.revoke_sessions(session, user.id, "password_changed", keep=who.session_id)
    _audit(session, who, "user.password_change", user.email, detail={"sessions_ended": len(ended)})
    _publish(session, *(f"session:{sid}" for sid in ended))


async def _checked_hash(password: str, email: str) -> str:
    problems = passwords.policy_problems(password, email)
    if problems:
        raise ValidationFailed("The password " + "; ".join(problems) + ".")
    return await passwords.hash_password(password)


# --- API tokens ----------------------------------------------------------------------------------


def _token_out(token: models.ApiToken, namespace: str | None) -> ApiToken:
    fields = {name: getattr(token, name) for name in ApiToken.model_fields if name != "namespace"}
    return ApiToken.model_validate({**fields, "namespace": namespace})


async def create_api_token(session: AsyncSession, who: Principal, data: ApiTokenCreate) -> ApiTokenCreated:
    if who.token_id is not None:
        raise Forbidden("API tokens cannot create API tokens; use a signed-in session.")
    namespace_id = None
    if data.namespace is not None:
        namespace_id = await repository.namespace_id(session, data.namespace)
        member = data.namespace in {name for name, _ in await repository.memberships(session, who.user_id)}  # type: ignore[arg-type]
        if namespace_id is None or not (member or who.is_admin):
            raise NotFound(f"Namespace '{data.namespace}' does not exist.")
    raw = new_token(API_TOKEN_PREFIX)
    expires = datetime.now(UTC) + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    token = models.ApiToken(
        user_id=who.user_id,
        name=data.name,
        prefix=raw[:12],
        token_hash=token_digest(raw),
        scope=data.scope,
        namespace_id=namespace_id,
        expires_at=expires,
    )
    session.add(token)
    try:
        await session.flush()
    except Exception as exc:  # the partial unique index on (user, name) among live tokens
        raise Conflict(f"You already have a live token named '{data.name}'.") from exc
    await session.refresh(token)
    _audit(
        session,
        who,
        "token.create",
        data.name,
        detail={"scope": data.scope.value, "namespace": data.namespace},
    )
    return ApiTokenCreated(**_token_out(token, data.namespace).model_dump(), token=raw)


async def list_api_tokens(session: AsyncSession, who: Principal, page: PageRequest) -> ApiTokenPage:
    after = page.key(datetime, uuid.UUID)
    rows = await repository.api_tokens_of(session, who.user_id, page.limit, after)  # type: ignore[arg-type]
    return page_of(
        ApiTokenPage,
        rows,
        page.limit,
        lambda r: [r[0].created_at, r[0].id],
        lambda r: _token_out(*r),
    )


async def revoke_api_token(session: AsyncSession, who: Principal, token_id: uuid.UUID) -> None:
    token = await session.get(models.ApiToken, token_id, with_for_update=True)
    if token is None or token.user_id != who.user_id:
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
    _audit(session, who, "token.revoke", token.name)
    _publish(session, f"token:{token.id}")


# --- users (platform admins) ---------------------------------------------------------------------


async def create_user(session: AsyncSession, who: Principal, data: UserCreate) -> User:
    if await repository.user_by_email(session, data.email):
        raise Conflict(f"A user with the email '{data.email}' exists.")
    password_hash = await _checked_hash(data.password.get_secret_value(), data.email)
    user = models.User(
        email=data.email, display_name=data.display_name, password_hash=password_hash, is_admin=data.is_admin
    )
    session.add(user)
    await session.flush()
    await session.refresh(user)
    _audit(session, who, "user.create", user.email, detail={"is_admin": data.is_admin})
    return User.model_validate(user)


async def update_user(session: AsyncSession, who: Principal, user_id: uuid.UUID, data: UserUpdate) -> User:
    user = await session.get(models.User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("No such user.")
    if user.id == who.user_id and (data.disabled or data.is_admin is False):
        raise Conflict("You cannot disable yourself or drop your own admin flag.")
    if data.display_name is not None:
        user.display_name = data.display_name
    if data.is_admin is not None:
        user.is_admin = data.is_admin
    if data.disabled is not None:
        await _set_disabled(session, user, data.disabled)
    await session.flush()
    await session.refresh(user)
    _audit(session, who, "user.update", user.email, detail=data.model_dump(exclude_none=True))
    _publish(session, f"user:{user.id}")
    return User.model_validate(user)


async def _set_disabled(session: AsyncSession, user: models.User, disabled: bool) -> None:
    user.disabled_at = (user.disabled_at or datetime.now(UTC)) if disabled else None
    if disabled:
        ended = await repository.revoke_sessions(session, user.id, "account_disabled")
        _publish(session, *(f"session:{sid}" for sid in ended))


async def list_users(session: AsyncSession, page: PageRequest) -> UserPage:
    rows = await repository.list_users(session, page.limit, page.key(str))
    return page_of(UserPage, rows, page.limit, lambda u: [u.email.lower()], User.model_validate)


# --- audit ---------------------------------------------------------------------------------------


def _event_out(event: models.AuditEvent) -> AuditEvent:
    fields = {name: getattr(event, name) for name in AuditEvent.model_fields}
    fields["client_ip"] = str(event.client_ip) if event.client_ip is not None else None
    fields["outcome"] = str(event.outcome.value)
    return AuditEvent.model_validate(fields)


async def audit_events(session: AsyncSession, filters: dict[str, Any], page: PageRequest) -> AuditEventPage:
    before = page.key(int)
    rows = await repository.audit_events(session, filters, page.limit, before[0] if before else None)
    return page_of(AuditEventPage, rows, page.limit, lambda e: [e.id], _event_out)
