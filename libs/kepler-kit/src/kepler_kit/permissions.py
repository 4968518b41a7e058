"""The permission table: each action, the least role that may do it, and the token scope it needs.

Roles are never carried in tokens: `decide` is given the caller's live role in the namespace.
"""

import enum
from dataclasses import dataclass
from typing import Literal, NamedTuple

from kepler_db import Role, TokenScope

ROLE_RANK = {Role.viewer: 1, Role.developer: 2, Role.maintainer: 3, Role.owner: 4}
SCOPE_RANK = {TokenScope.read: 1, TokenScope.write: 2, TokenScope.admin: 3}


class Action(enum.StrEnum):
    # platform level
    status_view = "status.view"
    account_view = "account.view"
    account_manage = "account.manage"

    namespace_list = "namespace.list"
    namespace_create = "namespace.create"
    audit_view_all = "audit.view_all"
    user_manage = "user.manage"
    cluster_manage = "cluster.manage"
    inbox_view = "inbox.view"
    inbox_manage = "inbox.manage"
    announcement_view = "announcement.view"
    # any caller may ask; the service decides `announcement_manage` in the announcement's own scope
    announcement_withdraw = "announcement.withdraw"
    event_view = "event.view"
    # namespace level

    namespace_view = "namespace.view"
    namespace_update = "namespace.update"
    namespace_delete = "namespace.delete"
    member_view = "member.view"
    member_manage = "member.manage"
    audit_view = "audit.view"
    app_view = "app.view"
    app_create = "app.create"
    app_update = "app.update"
    app_delete = "app.delete"
    build_view = "build.view"
    build_trigger = "build.trigger"
    deploy_view = "deploy.view"
    deploy_create = "deploy.create"
    deploy_approve = "deploy.approve"
    app_rollback = "app.rollback"
    app_scale = "app.scale"
    app_config = "app.config"
    app_secrets = "app.secrets"
    pod_view = "pod.view"
    pod_delete = "pod.delete"
    pod_exec = "pod.exec"
    logs_view = "logs.view"
    alert_view = "alert.view"
    alert_manage = "alert.manage"
    # `?namespace=` names where; none: platform-wide, which only admins may (`decide` on no namespace)
    announcement_manage = "announcement.manage"


Level = Role | Literal["authenticated", "admin"]


@dataclass(frozen=True)
class Rule:
    level: Level
    scope: TokenScope
    needs_exec: bool = False
    # A token confined to one namespace may still do it: the service narrows the answer to that namespace.
    within_token_namespace: bool = False

    @property
    def namespaced(self) -> bool:
        return isinstance(self.level, Role)


_R, _W, _A = TokenScope.read, TokenScope.write, TokenScope.admin
PERMISSIONS: dict[Action, Rule] = {
    Action.status_view: Rule("authenticated", _R),
    Action.account_view: Rule("authenticated", _R),
    Action.account_manage: Rule("authenticated", _A),
    Action.namespace_list: Rule("authenticated", _R, within_token_namespace=True),
    Action.namespace_create: Rule("admin", _A),
    Action.audit_view_all: Rule("admin", _R),
    Action.user_manage: Rule("admin", _A),
    Action.cluster_manage: Rule("admin", _A),
    Action.inbox_view: Rule("authenticated", _R),
    Action.inbox_manage: Rule("authenticated", _W),
    Action.announcement_view: Rule("authenticated", _R),
    Action.announcement_withdraw: Rule("authenticated", _A),
    # The activity feed: anyone signed in; what each caller sees is narrowed per event (alert-service's
    # visibility: their namespaces, a confined token's one namespace, platform announcements).
    Action.event_view: Rule("authenticated", _R, within_token_namespace=True),
    Action.namespace_view: Rule(Role.viewer, _R),
    Action.namespace_update: Rule(Role.owner, _A),
    Action.namespace_delete: Rule(Role.owner, _A),
    Action.member_view: Rule(Role.viewer, _R),
    Action.member_manage: Rule(Role.owner, _A),
    Action.audit_view: Rule(Role.owner, _R),
    Action.app_view: Rule(Role.viewer, _R),
    Action.app_create: Rule(Role.maintainer, _W),
    Action.app_update: Rule(Role.maintainer, _W),
    Action.app_delete: Rule(Role.owner, _A),
    Action.build_view: Rule(Role.viewer, _R),
    Action.build_trigger: Rule(Role.developer, _W),
    Action.deploy_view: Rule(Role.viewer, _R),
    Action.deploy_create: Rule(Role.developer, _W),
    Action.deploy_approve: Rule(Role.maintainer, _W),
    Action.app_rollback: Rule(Role.maintainer, _W),
    Action.app_scale: Rule(Role.maintainer, _W),
    Action.app_config: Rule(Role.maintainer, _W),
    Action.app_secrets: Rule(Role.maintainer, _W),
    Action.pod_view: Rule(Role.viewer, _R),
    Action.pod_delete: Rule(Role.developer, _W),
    Action.pod_exec: Rule(Role.developer, _W, needs_exec=True),
    Action.logs_view: Rule(Role.viewer, _R),
    Action.alert_view: Rule(Role.viewer, _R),
    Action.alert_manage: Rule(Role.maintainer, _W),
    Action.announcement_manage: Rule(Role.owner, _A),
}


class Decision(enum.Enum):
    allow = "allow"
    unauthenticated = "unauthenticated"  # 401
    forbidden = "forbidden"  # 403: may see the namespace, may not do this
    hidden = "hidden"  # 404: may not even know the namespace exists


class Caller(NamedTuple):
    """What `decide` needs to know about who is asking, read live from the database (cached briefly)."""

    authenticated: bool
    is_admin: bool = False
    scope: TokenScope | None = None  # None: an interactive login, limited only by roles
    token_namespace: str | None = None
    role: Role | None = None


def decide(
    action: Action, caller: Caller, namespace: str | None = None, allow_exec: bool = False
) -> Decision:
    rule = PERMISSIONS[action]
    if not caller.authenticated:
        return Decision.unauthenticated
    if caller.token_namespace is not None and namespace != caller.token_namespace:
        if namespace:
            return Decision.hidden
        if not rule.within_token_namespace:
            return Decision.forbidden
    if caller.scope is not None and SCOPE_RANK[caller.scope] < SCOPE_RANK[rule.scope]:
        return Decision.forbidden
    if not isinstance(rule.level, Role):
        return Decision.allow if rule.level == "authenticated" or caller.is_admin else Decision.forbidden
    if namespace is None and not caller.is_admin:
        return Decision.forbidden  # a namespaced action asked about no namespace: only admins span them all

    return _namespaced(rule, rule.level, caller, allow_exec)


def _namespaced(rule: Rule, least: Role, caller: Caller, allow_exec: bool) -> Decision:
    if rule.needs_exec and not allow_exec:
        return Decision.forbidden if caller.is_admin or caller.role else Decision.hidden
    if caller.is_admin:
        return Decision.allow
    if caller.role is None:
        return Decision.hidden
    return Decision.allow if ROLE_RANK[caller.role] >= ROLE_RANK[least] else Decision.forbidden
