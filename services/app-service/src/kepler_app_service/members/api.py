"""Member endpoints: thin, typed, every error and permission declared."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from kepler_app_service.dependencies import NamespaceInPath
from kepler_app_service.members import service
from kepler_app_service.members.schemas import Member, MemberCreate, MemberPage, MemberUpdate
from kepler_kit.access import Access, require
from kepler_kit.db import DbSession
from kepler_kit.errors import NAMESPACE_DENIALS, BadRequest, Conflict, error_responses
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action


def _user_id(user_id: uuid.UUID) -> uuid.UUID:
    """A dependency, so that the OpenAPI document lists it after the namespace, as the path does."""
    return user_id


UserIdInPath = Annotated[uuid.UUID, Depends(_user_id)]
router = APIRouter(prefix="/api/v1/namespaces/{namespace}/members", tags=["members"])
DENIED = NAMESPACE_DENIALS


@router.get("", responses=error_responses(*DENIED, BadRequest), summary="List a namespace's members")
async def list_members(
    session: DbSession, page: PageParams, namespace: NamespaceInPath, _: Access = require(Action.member_view)
) -> MemberPage:
    return await service.list_members(session, namespace, page)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, Conflict),
    summary="Add a user to a namespace by email",
)
async def add_member(
    namespace: NamespaceInPath,
    body: MemberCreate,
    session: DbSession,
    access: Access = require(Action.member_manage),
) -> Member:
    return await service.add_member(session, access.principal, namespace, body)


@router.patch(
    "/{user_id}",
    responses=error_responses(*DENIED, Conflict),
    summary="Change a member's role in a namespace",
)
async def change_member_role(
    namespace: NamespaceInPath,
    user_id: UserIdInPath,
    body: MemberUpdate,
    session: DbSession,
    access: Access = require(Action.member_manage),
) -> Member:
    return await service.change_member_role(session, access.principal, namespace, user_id, body)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, Conflict),
    summary="Remove a member (never the last owner)",
)
async def remove_member(
    namespace: NamespaceInPath,
    user_id: UserIdInPath,
    session: DbSession,
    access: Access = require(Action.member_manage),
) -> None:
    await service.remove_member(session, access.principal, namespace, user_id)
