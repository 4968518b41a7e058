from kepler_db.base import Base
from kepler_db.models import App, AuditEvent, AuditOutcome, Membership, Namespace, NamespaceStatus, Role, User

__all__ = [
    "App",
    "AuditEvent",
    "AuditOutcome",
    "Base",
    "Membership",
    "Namespace",
    "NamespaceStatus",
    "Role",
    "User",
]
