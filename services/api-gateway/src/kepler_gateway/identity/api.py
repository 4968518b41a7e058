"""The gateway's own identity endpoints: login, sessions, the signed-in user, tokens, users, audit, JWKS."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import select

from kepler_db import AuditOutcome, SigningKey
from kepler_gateway.identity import service
from kepler_gateway.identity.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenPage,
    AuditEventPage,
    Jwks,
    LoginRequest,
    Me,
    PasswordChange,
    RefreshRequest,
    TokenPair,
    User,
    UserCreate,
    UserPage,
    UserUpdate,
)
from kepler_kit.access import Access, public, require
from kepler_kit.db import DbSession
from kepler_kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    KeplerError,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    error_responses,
)
from kepler_kit.identity import client_ip
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action
from kepler_kit.problems import problem_response
from kepler_kit.text import Line

auth = APIRouter(prefix="/api/v1/auth", tags=["auth"])
account = APIRouter(prefix="/api/v1/me", tags=["auth"])
users = APIRouter(prefix="/api/v1/users", tags=["users"])
audit = APIRouter(prefix="/api/v1/audit-events", tags=["audit"])
keys = APIRouter(tags=["auth"])

DENIED = (Unauthorized, Forbidden)


def _auth(request: Request) -> service.Auth:
    state = request.state
    return service.Auth(issuer=state.issuer, redis=state.arq, settings=state.auth_settings)


def _answer(result: TokenPair | KeplerError, request: Request) -> TokenPair | Response:
    return (
        problem_response(result, request.url.path, result.headers)
        if isinstance(result, KeplerError)
        else result
    )


@auth.post(
    "/login",
    response_model=TokenPair,
    responses=error_responses(Unauthorized, TooManyRequests, ServiceUnavailable),
    summary="Sign in with email and password",
)
async def login(
    body: LoginRequest, request: Request, session: DbSession, _: None = public()
) -> TokenPair | Response:
    agent = request.headers.get("user-agent")
    return _answer(await service.login(session, _auth(request), body, client_ip(request), agent), request)


@auth.post(
    "/refresh",
    response_model=TokenPair,
    responses=error_responses(Unauthorized, TooManyRequests, ServiceUnavailable),
    summary="Trade a refresh token for new tokens (each refresh token works once)",
)
async def refresh_tokens(
    body: RefreshRequest, request: Request, session: DbSession, _: None = public()
) -> TokenPair | Response:
    secret = body.refresh_token.get_secret_value()
    return _answer(await service.refresh(session, _auth(request), secret, client_ip(request)), request)


@auth.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, BadRequest),
    summary="End this session",
)
async def logout(session: DbSession, access: Access = require(Action.account_view)) -> None:
    await service.logout(session, access.principal)


@keys.get("/.well-known/jwks.json", summary="Public keys that sign Kepler tokens")
async def get_jwks(session: DbSession, _: None = public()) -> Jwks:
    rows = await session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None)))
    return Jwks.model_validate({"keys": [row.public_jwk for row in rows]})


@account.get("", responses=error_responses(*DENIED), summary="The signed-in user and their namespaces")
async def get_me(session: DbSession, access: Access = require(Action.account_view)) -> Me:
    return await service.me(session, access.principal)


@account.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED),
    summary="Change your password (ends your other sessions)",
)
async def change_password(
    body: PasswordChange, session: DbSession, access: Access = require(Action.account_manage)
) -> None:
    await service.change_password(session, access.principal, body)


@account.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, NotFound, Conflict),
    summary="Create a personal API token (shown once)",
)
async def create_api_token(
    body: ApiTokenCreate, session: DbSession, access: Access = require(Action.account_manage)
) -> ApiTokenCreated:
    return await service.create_api_token(session, access.principal, body)


@account.get("/tokens", responses=error_responses(*DENIED), summary="Your API tokens")
async def list_api_tokens(
    session: DbSession, page: PageParams, access: Access = require(Action.account_view)
) -> ApiTokenPage:
    return await service.list_api_tokens(session, access.principal, page)


@account.delete(
    "/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, NotFound),
    summary="Revoke one of your API tokens",
)
async def revoke_api_token(
    token_id: uuid.UUID, session: DbSession, access: Access = require(Action.account_manage)
) -> None:
    await service.revoke_api_token(session, access.principal, token_id)


@users.get("", responses=error_responses(*DENIED), summary="List users (platform admins)")
async def list_users(
    session: DbSession, page: PageParams, _: Access = require(Action.user_manage)
) -> UserPage:
    return await service.list_users(session, page)


@users.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, Conflict),
    summary="Create a local user (platform admins)",
)
async def create_user(
    body: UserCreate, session: DbSession, access: Access = require(Action.user_manage)
) -> User:
    return await service.create_user(session, access.principal, body)


@users.patch(
    "/{user_id}",
    responses=error_responses(*DENIED, NotFound, Conflict),
    summary="Disable, enable, promote or rename a user (platform admins)",
)
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, session: DbSession, access: Access = require(Action.user_manage)
) -> User:
    return await service.update_user(session, access.principal, user_id, body)


@audit.get(
    "",
    responses=error_responses(*DENIED, NotFound, BadRequest),
    summary="Audit events: a namespace's for its owners, all of them for platform admins",
)
async def list_audit_events(
    session: DbSession,
    page: PageParams,
    namespace: Annotated[Line | None, Query(max_length=63)] = None,
    actor_id: uuid.UUID | None = None,
    action: Annotated[Line | None, Query(max_length=100)] = None,
    outcome: AuditOutcome | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    access: Access = require(Action.audit_view),
) -> AuditEventPage:
    if namespace is None and not access.principal.is_admin:
        raise BadRequest("Give `namespace`: only platform admins may list every namespace's events.")
    filters: dict[str, Any] = {
        "namespace": namespace,
        "actor_id": actor_id,
        "action": action,
        "outcome": outcome,
        "since": since,
        "until": until,
    }
    return await service.audit_events(session, filters, page)
