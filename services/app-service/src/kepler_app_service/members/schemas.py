"""What the member endpoints accept and return."""

import uuid
from datetime import datetime

from pydantic import BaseModel

from kepler_app_service.fields import Strict
from kepler_db import Role
from kepler_kit.pagination import Page
from kepler_kit.text import Email


class MemberCreate(Strict):
    email: Email
    role: Role


class MemberUpdate(Strict):
    role: Role


class Member(BaseModel):
    user_id: uuid.UUID
    email: str
    display_name: str
    role: Role
    created_at: datetime


class MemberPage(Page[Member]):
    pass
