"""Live authorisation: who is calling a service and what they may do there, checked against Postgres,
cached for a few seconds and evicted at once when another process publishes a change.

One concern per module: `cache` (the live data and its invalidation), `authentication` (credential →
principal), `authorization` (`require`/`authorize`, denials), `fast_path` (the check lifted out of FastAPI's
dependency solving), `grants` (what a credential was already granted). Import from this package.
"""

from kepler_kit.access.authentication import ServiceAuthenticator, principal_for
from kepler_kit.access.authorization import authorize, public, request_namespace, require
from kepler_kit.access.cache import (
    CHANNEL,
    AccessControl,
    NamespaceAccess,
    PrincipalCache,
    SingleFlight,
    UserState,
    publish_access_change,
)
from kepler_kit.access.fast_path import install_permission_check
from kepler_kit.access.grants import Access, Grant, Grants

__all__ = [
    "CHANNEL",
    "Access",
    "AccessControl",
    "Grant",
    "Grants",
    "NamespaceAccess",
    "PrincipalCache",
    "ServiceAuthenticator",
    "SingleFlight",
    "UserState",
    "authorize",
    "install_permission_check",
    "principal_for",
    "public",
    "publish_access_change",
    "request_namespace",
    "require",
]
