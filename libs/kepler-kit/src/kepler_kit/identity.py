"""Who is calling. The seam where authentication (issue #3) plugs in.

Today every request acts as the anonymous development principal; the gateway will forward a verified,
signed identity and `current_principal` will verify it. Services only ever depend on `CurrentPrincipal`.
"""

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID | None
    name: str
    token_id: uuid.UUID | None = None
    is_admin: bool = False
    client_ip: str | None = None


def client_ip(request: Request) -> str | None:
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip() or None
    return request.client.host if request.client else None


async def current_principal(request: Request) -> Principal:
    return Principal(user_id=None, name="anonymous", client_ip=client_ip(request))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
