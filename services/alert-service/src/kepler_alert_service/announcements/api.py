"""Announcement endpoints: thin, typed, every error and permission declared."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from kepler_alert_service.announcements import service
from kepler_alert_service.announcements.schemas import Announcement, AnnouncementCreate, AnnouncementPage
from kepler_kit.access import Access, require
from kepler_kit.db import DbSession
from kepler_kit.errors import (
    NAMESPACE_DENIALS,
    BadRequest,
    Forbidden,
    NotFound,
    Unauthorized,
    error_responses,
)
from kepler_kit.names import NamespaceName
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action

router = APIRouter(prefix="/api/v1/announcements", tags=["announcements"])


def _announcement_id(announcement_id: uuid.UUID) -> uuid.UUID:
    return announcement_id


AnnouncementInPath = Annotated[uuid.UUID, Depends(_announcement_id)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*NAMESPACE_DENIALS),
    summary="Publish an announcement to a namespace's members, or to everyone",
)
async def publish_announcement(
    body: AnnouncementCreate,
    session: DbSession,
    response: Response,
    namespace: Annotated[
        NamespaceName | None,
        Query(description="Whose members it is for (you must own it); none: everyone, which only admins may"),
    ] = None,
    access: Access = require(Action.announcement_manage),
) -> Announcement:
    announcement = await service.publish_announcement(session, access.principal, namespace, body)
    response.headers["Location"] = f"{router.prefix}/{announcement.id}"
    return announcement


@router.get(
    "",
    responses=error_responses(Unauthorized, Forbidden, BadRequest),
    summary="The announcements for you: platform-wide ones and your namespaces'",
)
async def list_announcements(
    session: DbSession,
    page: PageParams,
    include_expired: Annotated[bool, Query(description="Also those past their expiry")] = False,
    access: Access = require(Action.announcement_view),
) -> AnnouncementPage:
    return await service.list_announcements(session, access.principal, page, include_expired)


@router.get(
    "/{announcement_id}",
    responses=error_responses(Unauthorized, Forbidden, NotFound),
    summary="One announcement for you (expired ones too; withdrawn ones are gone)",
)
async def get_announcement(
    announcement_id: AnnouncementInPath,
    session: DbSession,
    access: Access = require(Action.announcement_view),
) -> Announcement:
    return await service.get_announcement(session, access.principal, announcement_id)


@router.delete(
    "/{announcement_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(Unauthorized, Forbidden, NotFound),
    summary="Withdraw an announcement (in the scope you may publish in)",
)
async def withdraw_announcement(
    announcement_id: AnnouncementInPath,
    session: DbSession,
    access: Access = require(Action.announcement_withdraw),
) -> None:
    await service.withdraw_announcement(session, access.principal, announcement_id)
