"""May the caller do this here: `require(action)` declares an endpoint's permission, `authorize` decides it
live (reusing what this credential was already granted), and denials are audited."""

from typing import Any

from fastapi import Depends, Request

from kepler_db import AuditOutcome
from kepler_kit.access.cache import NamespaceAccess
from kepler_kit.access.grants import GRANTS_KEY, PER_CREDENTIAL, Access, Grant, Grants, granted_before
from kepler_kit.audit import record_audit_now
from kepler_kit.errors import Forbidden, NotFound, Unauthorized
from kepler_kit.identity import Principal, current_principal
from kepler_kit.permissions import Action, Caller, Decision, decide


async def authorize(request: Request, action: Action) -> Access:
    """Checks `action` for the caller in the path's `{namespace}` (or `?namespace=`), live.

    A permission granted to the same credential for the same namespace while nothing access-related
    changed (and within the TTL) is reused; anything else is decided afresh."""
    principal = await current_principal(request)
    scope = request.scope
    namespace = request_namespace(request)
    grants: Grants | None = scope.get(GRANTS_KEY)
    granted = granted_before(grants, action, namespace) if grants is not None else None
    if granted is not None:
        return Access(principal, namespace, granted.role)
    state = scope["state"]
    ns_access = NamespaceAccess(True)
    if namespace and principal.user_id is not None:
        ns_access = await state["access_control"].namespace_access(principal.user_id, namespace)
    caller = Caller(
        authenticated=principal.authenticated,
        is_admin=principal.is_admin,
        scope=principal.scope,
        token_namespace=principal.token_namespace,
        role=ns_access.role,
    )
    decision = decide(action, caller, namespace, ns_access.allow_exec)
    if decision is Decision.allow:
        if grants is not None:
            if len(grants) >= PER_CREDENTIAL:
                grants.clear()
            grants[(action, namespace)] = Grant(ns_access.fresh_until, ns_access.role)
        return Access(principal, namespace, ns_access.role)

    await _audit_denial(state, principal, action, namespace, decision)
    raise _denial(decision, namespace)


def request_namespace(request: Request) -> str | None:
    """The namespace a request acts in: the path's `{namespace}`, else `?namespace=`."""
    scope = request.scope
    namespace: str | None = scope.get("path_params", {}).get("namespace")
    if namespace is None and scope.get("query_string"):
        namespace = request.query_params.get("namespace")
    return namespace or None


def require(action: Action) -> Any:
    """Declares (and enforces) the permission of an endpoint: `access: Access = require(Action.app_view)`.

    Services built by the kit lift it out of FastAPI's dependency solving (see `install_permission_check`):
    the check then runs before the endpoint at a third of the cost, with the same result.
    """

    async def check(request: Request) -> Access:
        return await authorize(request, action)

    check.kepler_action = action.value  # type: ignore[attr-defined]
    return Depends(check)


def public() -> Any:
    """Marks an endpoint that needs no identity (login, webhooks that check their own secret)."""

    async def check() -> None:
        return None

    check.kepler_action = "public"  # type: ignore[attr-defined]
    return Depends(check)


def _denial(decision: Decision, namespace: str | None) -> Exception:
    if decision is Decision.unauthenticated:
        return Unauthorized("Sign in, or send an access or API token.")
    if decision is Decision.hidden:
        return NotFound(f"Namespace '{namespace}' does not exist.")
    return Forbidden("Your role in this namespace does not allow this.")


async def _audit_denial(
    state: Any, principal: Principal, action: Action, namespace: str | None, decision: Decision
) -> None:
    """Denials are audited in a transaction of their own: the request's will roll back."""
    if not principal.authenticated:
        return
    await record_audit_now(
        state["sessionmaker"],
        principal,
        service=state["service"],
        action=action.value,
        target_type="namespace" if namespace else "platform",
        target=namespace or "-",
        namespace=namespace,
        outcome=AuditOutcome.denied,
        detail={"decision": decision.value},
    )
