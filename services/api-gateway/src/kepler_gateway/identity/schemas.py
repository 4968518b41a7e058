"""What the identity endpoints accept and return. Secrets appear only in the response that creates them."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kepler_db import Role, TokenScope
from kepler_kit.names import NamespaceName
from kepler_kit.pagination import Page
from kepler_kit.scalars import JsonBool, JsonInt
from kepler_kit.text import Line, Secret, SingleLine

# Stricter than the kit's `Email` (a dot in the domain) for the addresses Kepler itself accepts.
Email = Annotated[
    str, StringConstraints(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), SingleLine
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(Strict):
    email: Email
    password: Secret = Field(max_length=1024)


class RefreshRequest(Strict):
    refresh_token: Secret = Field(max_length=256)


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105  (the OAuth token type, not a secret)
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str = Field(description="Use once: each refresh returns a new one")


class Membership(BaseModel):
    namespace: str
    role: Role


class Me(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    is_admin: bool
    memberships: list[Membership]


class PasswordChange(Strict):
    current_password: Secret = Field(max_length=1024)
    new_password: Secret = Field(max_length=1024)


class ApiTokenCreate(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[\w .:-]+$")]
    scope: TokenScope
    namespace: NamespaceName | None = Field(None, description="Restrict the token to this namespace")
    expires_in_days: JsonInt | None = Field(90, ge=1, le=366, description="Null for no expiry")


class ApiToken(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The token's first characters, to recognise it")
    scope: TokenScope
    namespace: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreated(ApiToken):
    token: str = Field(description="Shown once; Kepler keeps only its hash")


class ApiTokenPage(Page[ApiToken]):
    pass


class UserCreate(Strict):
    email: Email
    display_name: Annotated[Line, StringConstraints(max_length=200)] = ""
    password: Secret = Field(max_length=1024)
    is_admin: JsonBool = False


class UserUpdate(Strict):
    display_name: Annotated[Line, StringConstraints(max_length=200)] | None = None
    is_admin: JsonBool | None = None
    disabled: JsonBool | None = None


class User(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str
    is_admin: bool
    disabled_at: datetime | None
    last_login_at: datetime | None
    created_at: datetime


class UserPage(Page[User]):
    pass


class AuditEvent(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    service: str
    actor_id: uuid.UUID | None
    actor: str
    token_id: uuid.UUID | None
    action: str
    target_type: str
    target: str
    namespace: str | None
    request_id: str | None
    outcome: str
    client_ip: str | None
    detail: dict[str, object]


class AuditEventPage(Page[AuditEvent]):
    pass


class Jwk(BaseModel):
    model_config = ConfigDict(extra="allow")

    kty: str
    kid: str
    crv: str | None = None
    x: str | None = None
    y: str | None = None


class Jwks(BaseModel):
    keys: list[Jwk]
