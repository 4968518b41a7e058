"""Every table of the shared schema. Each table has exactly one writing service (named per class)."""

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.orm import Mapped, mapped_column

from kepler_db.base import Base, Timestamped, utcnow


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    return Enum(kind, name=name, values_callable=lambda members: [m.value for m in members])


class Role(enum.StrEnum):
    owner = "owner"
    maintainer = "maintainer"
    developer = "developer"
    viewer = "viewer"


class NamespaceStatus(enum.StrEnum):
    provisioning = "provisioning"
    active = "active"
    failed = "failed"


class TokenScope(enum.StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


class AuditOutcome(enum.StrEnum):
    success = "success"
    denied = "denied"
    failed = "failed"


class User(Timestamped, Base):
    """Written by the api-gateway (identity); `idp_groups` is the group claim of the last OIDC login."""

    __tablename__ = "users"
    __table_args__ = (
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
        UniqueConstraint("oidc_issuer", "oidc_subject"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled_at: Mapped[datetime | None]
    oidc_issuer: Mapped[str | None] = mapped_column(String(2048))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    idp_groups: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'::jsonb"))

    last_login_at: Mapped[datetime | None]


class Namespace(Timestamped, Base):
    """Written by app-service. Maps 1:1 to a Kubernetes namespace."""

    __tablename__ = "namespaces"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(String(2000), default="")
    status: Mapped[NamespaceStatus] = mapped_column(
        _enum(NamespaceStatus, "namespace_status"), default=NamespaceStatus.provisioning
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    cluster_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clusters.id", ondelete="RESTRICT"))
    allow_exec: Mapped[bool] = mapped_column(default=False, server_default=false())
    require_deploy_approval: Mapped[bool] = mapped_column(default=False, server_default=false())


class Membership(Timestamped, Base):
    """Written by app-service (tenancy): by hand (`source=manual`) or from IdP groups (`source=idp`)."""

    __tablename__ = "memberships"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    namespace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[Role] = mapped_column(_enum(Role, "membership_role"))
    source: Mapped[str] = mapped_column(String(16), default="manual", server_default="manual")


class App(Timestamped, Base):
    """Written by app-service."""

    __tablename__ = "apps"
    __table_args__ = (
        UniqueConstraint("namespace_id", "name"),
        CheckConstraint("jsonb_typeof(ports) = 'array'", name="ports_is_array"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    namespace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("namespaces.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(53))
    description: Mapped[str] = mapped_column(String(2000), default="")
    git_url: Mapped[str | None] = mapped_column(String(2048), doc="none for an app that only deploys images")
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    dockerfile_path: Mapped[str] = mapped_column(String(1024), default="Dockerfile")
    language: Mapped[str | None] = mapped_column(String(64))
    ports: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    auto_rollback: Mapped[bool] = mapped_column(default=True, server_default=true())
    selector: Mapped[dict[str, Any] | None] = mapped_column(
        doc="an adopted Deployment's (immutable) selector"
    )
    scaled_replicas: Mapped[int | None] = mapped_column(doc="set by a scale; later releases start from it")

    current_release: Mapped[int | None] = mapped_column(doc="number of the release that last rolled out")
    live: Mapped[dict[str, Any]] = mapped_column(
        default=dict,
        server_default=text("'{}'::jsonb"),
        doc="replica counts and rollout state, from the watch",
    )


class AuditEvent(Base):
    """Appended by every service, in the same transaction as the change it records."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_namespace_time", "namespace", "occurred_at"),
        Index("ix_audit_events_actor_time", "actor_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now(), index=True)
    service: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[uuid.UUID | None]
    actor: Mapped[str] = mapped_column(String(254))
    token_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300))
    namespace: Mapped[str | None] = mapped_column(String(63))
    request_id: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[AuditOutcome] = mapped_column(_enum(AuditOutcome, "audit_outcome"))
    client_ip: Mapped[str | None] = mapped_column(INET)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AuthSession(Base):
    """A login: the family of rotating refresh tokens. Written by the api-gateway."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(String(512))


class RefreshToken(Base):
    """One link of a session's rotation chain; only its SHA-256 is stored. Written by the api-gateway."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    used_at: Mapped[datetime | None]


class ApiToken(Base):
    """A personal token for CI and scripts; only its SHA-256 is stored. Written by the api-gateway."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        Index(
            "uq_api_tokens_user_id_name_active",
            "user_id",
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[TokenScope] = mapped_column(_enum(TokenScope, "token_scope"))
    namespace_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SigningKey(Base):
    """Keys that sign access and identity tokens. The private half is encrypted with the platform key;
    services read the public half to verify tokens locally. Written by the api-gateway."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]]
    private_jwk_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    retired_at: Mapped[datetime | None]


class DeploymentStatus(enum.StrEnum):
    pending = "pending"
    applying = "applying"
    progressing = "progressing"
    succeeded = "succeeded"
    failed = "failed"
    superseded = "superseded"
    rolled_back = "rolled_back"
    cancelled = "cancelled"


class Cluster(Timestamped, Base):
    """A Kubernetes cluster to deploy to; credentials sealed with the platform key. Written by app-service."""

    __tablename__ = "clusters"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    api_url: Mapped[str | None] = mapped_column(String(2048))
    in_cluster: Mapped[bool] = mapped_column(default=False)
    ca_data: Mapped[str | None] = mapped_column(String(16384))
    insecure_skip_tls_verify: Mapped[bool] = mapped_column(default=False)
    token_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    client_cert_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    client_key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    simulated: Mapped[bool] = mapped_column(default=False)


class Release(Base):
    """One immutable, numbered version of everything that defines what runs. Written by app-service."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("app_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    number: Mapped[int]
    spec: Mapped[dict[str, Any]]
    cause: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class Deployment(Timestamped, Base):
    """A request to make a release run, and what became of it. Written by app-service."""

    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_app_id_created_at", "app_id", "created_at"),
        Index("ix_deployments_status_updated_at", "status", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    release_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))
    status: Mapped[DeploymentStatus] = mapped_column(
        _enum(DeploymentStatus, "deployment_status"), default=DeploymentStatus.pending
    )
    reason: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(String(2000))
    automatic: Mapped[bool] = mapped_column(default=False, doc="an automatic rollback")
    requested_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    attempt: Mapped[int] = mapped_column(default=0)
    heartbeat_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    resource_version: Mapped[str | None] = mapped_column(String(64))
    replicas: Mapped[dict[str, Any]] = mapped_column(default=dict)
    request_id: Mapped[str | None] = mapped_column(
        String(128), doc="the request that asked for it: a rescued run logs it"
    )


class DeploymentEvent(Base):
    """What a client following a deployment sees, kept so a reconnecting client can catch up."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]]


class PlatformEvent(Base):
    """The platform event log: appended by every service through `kepler_kit.events.publish`, in the same
    transaction as the change it tells of, and never updated. Read in (txid, id) order below the horizon of
    running transactions (`kepler_kit.events.log`): ids are taken at insert, not at commit.

    No foreign keys: an event outlives the namespace, app or user it names (a deleted app's history)."""

    __tablename__ = "platform_events"
    __table_args__ = (
        Index("ix_platform_events_position", "txid", "id"),
        Index("ix_platform_events_namespace_id_id", "namespace_id", "id"),
        Index("ix_platform_events_app_id_id", "app_id", "id"),
        Index("ix_platform_events_kind_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    txid: Mapped[int] = mapped_column(
        BigInteger,
        server_default=text("(pg_current_xact_id()::text::bigint)"),
        doc="the writing transaction's id: readers order by (txid, id) and stop at the oldest running one",
    )
    kind: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(doc="the schema version of `data` for this kind")
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now(), index=True)
    service: Mapped[str] = mapped_column(String(64))
    namespace_id: Mapped[uuid.UUID | None]
    namespace: Mapped[str | None] = mapped_column(String(63))
    app_id: Mapped[uuid.UUID | None]
    app: Mapped[str | None] = mapped_column(String(53))
    actor_id: Mapped[uuid.UUID | None]
    actor: Mapped[str] = mapped_column(String(254))
    correlation_id: Mapped[str | None] = mapped_column(String(128), doc="the request id that caused it")
    data: Mapped[dict[str, Any]]


class EventConsumer(Base):
    """Where a consumer of the event log has got to. Each row is written by the service whose worker runs
    that consumer, in the same transaction as the effects of the events it consumed."""

    __tablename__ = "event_consumers"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger, default=0)
    event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    consumed: Mapped[int] = mapped_column(BigInteger, default=0, doc="events handled, for metrics")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now(), onupdate=utcnow)


class Severity(enum.StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


class Announcement(Timestamped, Base):
    """A message from platform admins (to everyone) or a namespace's owners (to its members). Written by
    alert-service."""

    __tablename__ = "announcements"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    namespace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), index=True, doc="none: platform-wide"
    )
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(10000), default="")
    severity: Mapped[Severity] = mapped_column(_enum(Severity, "announcement_severity"))
    expires_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Notification(Base):
    """One event in one user's inbox. Written by alert-service's inbox consumer (one row per user and event:
    a redelivered event adds nothing) and by the user marking it read."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "event_id"),
        Index("ix_notifications_user_id_id", "user_id", "id"),
        Index("ix_notifications_unread", "user_id", postgresql_where=text("read_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("platform_events.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(String(64), doc="why it reached this user, e.g. `maintainer`")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    read_at: Mapped[datetime | None]


class InboxRule(Timestamped, Base):
    """A user's own choice about what reaches their inbox, over the defaults: follow (or mute) kinds of event,
    everywhere or in one namespace or app. Written by alert-service."""

    __tablename__ = "inbox_rules"
    __table_args__ = (
        Index(
            "uq_inbox_rules_scope",
            "user_id",
            "pattern",
            text("coalesce(namespace_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            text("coalesce(app_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            unique=True,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    pattern: Mapped[str] = mapped_column(String(64), doc="an event kind, or a family such as `deployment.*`")
    namespace_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    app_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    muted: Mapped[bool] = mapped_column(default=False, doc="true: never deliver these, defaults included")
