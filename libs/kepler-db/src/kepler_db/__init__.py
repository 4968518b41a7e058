from kepler_db.base import Base
from kepler_db.models import (
    ApiToken,
    App,
    AuditEvent,
    AuditOutcome,
    AuthSession,
    Membership,
    Namespace,
    NamespaceStatus,
    RefreshToken,
    Role,
    SigningKey,
    TokenScope,
    User,
)

__all__ = [
    "ApiToken",
    "App",
    "AuditEvent",
    "AuditOutcome",
    "AuthSession",
    "Base",
    "Membership",
    "Namespace",
    "NamespaceStatus",
    "RefreshToken",
    "Role",
    "SigningKey",
    "TokenScope",
    "User",
]
