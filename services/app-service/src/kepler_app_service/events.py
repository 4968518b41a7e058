"""app-service's events in the platform log: one signature for every domain, the service named once.

Published in the caller's transaction, next to the audit row: the event exists exactly when the change does.
"""

import uuid
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service import SERVICE
from kepler_db import models
from kepler_kit.events import Event, publish
from kepler_kit.identity import Principal


def emit(session: AsyncSession, who: Principal | None, event: Event) -> None:
    """`who` asked for the change; None when the platform made it on its own (an automatic rollback, a
    rollout's outcome, an identity provider's group)."""
    publish(session, event, service=SERVICE, actor=who if who is not None and who.authenticated else None)


class Subject(TypedDict, total=False):
    """An event's envelope: what it is about (`Event(**about_app(...), ...)`)."""

    namespace_id: uuid.UUID
    namespace: str
    app_id: uuid.UUID
    app: str


def about_app(namespace: models.Namespace, app: models.App) -> Subject:
    return {"namespace_id": namespace.id, "namespace": namespace.name, "app_id": app.id, "app": app.name}


def about_namespace(namespace: models.Namespace) -> Subject:
    return {"namespace_id": namespace.id, "namespace": namespace.name}
