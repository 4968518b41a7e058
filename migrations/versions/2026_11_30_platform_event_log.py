"""the platform event log, its consumers' cursors, inbox notifications and rules, announcements

Every insert into `platform_events` notifies channel `kepler_events` (a statement trigger, so a request
publishing several events sends one notification, and only when it commits): readers wake at once instead
of polling, and Postgres drops the notification with the transaction on rollback.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


CHANNEL = "kepler_events"
_NOTIFY_FUNCTION = f"""
CREATE FUNCTION kepler_notify_platform_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END $$
"""
_NOTIFY_TRIGGER = """
CREATE TRIGGER platform_events_notify AFTER INSERT ON platform_events
FOR EACH STATEMENT EXECUTE FUNCTION kepler_notify_platform_events()
"""


def upgrade() -> None:
    op.create_table(
        "event_consumers",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("consumed", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_event_consumers")),
    )
    op.create_table(
        "platform_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "txid",
            sa.BigInteger(),
            server_default=sa.text("(pg_current_xact_id()::text::bigint)"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("namespace_id", sa.Uuid(), nullable=True),
        sa.Column("namespace", sa.String(length=63), nullable=True),
        sa.Column("app_id", sa.Uuid(), nullable=True),
        sa.Column("app", sa.String(length=53), nullable=True),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_events")),
    )
    op.create_index("ix_platform_events_app_id_id", "platform_events", ["app_id", "id"], unique=False)
    op.create_index("ix_platform_events_kind_id", "platform_events", ["kind", "id"], unique=False)
    op.create_index(
        "ix_platform_events_namespace_id_id", "platform_events", ["namespace_id", "id"], unique=False
    )
    op.create_index(op.f("ix_platform_events_occurred_at"), "platform_events", ["occurred_at"], unique=False)
    op.create_index("ix_platform_events_position", "platform_events", ["txid", "id"], unique=False)
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["platform_events.id"],
            name=op.f("fk_notifications_event_id_platform_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("user_id", "event_id", name=op.f("uq_notifications_user_id_event_id")),
    )
    op.create_index(op.f("ix_notifications_event_id"), "notifications", ["event_id"], unique=False)
    op.create_index(
        "ix_notifications_unread",
        "notifications",
        ["user_id"],
        unique=False,
        postgresql_where=sa.text("read_at IS NULL"),
    )
    op.create_index("ix_notifications_user_id_id", "notifications", ["user_id", "id"], unique=False)
    op.create_table(
        "announcements",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("namespace_id", sa.Uuid(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.String(length=10000), nullable=False),
        sa.Column(
            "severity", sa.Enum("info", "warning", "critical", name="announcement_severity"), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_announcements_created_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_announcements_namespace_id_namespaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_announcements")),
    )
    op.create_index(op.f("ix_announcements_namespace_id"), "announcements", ["namespace_id"], unique=False)
    op.create_table(
        "inbox_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("pattern", sa.String(length=64), nullable=False),
        sa.Column("namespace_id", sa.Uuid(), nullable=True),
        sa.Column("app_id", sa.Uuid(), nullable=True),
        sa.Column("muted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_inbox_rules_app_id_apps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_inbox_rules_namespace_id_namespaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_inbox_rules_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_rules")),
    )
    op.create_index(op.f("ix_inbox_rules_user_id"), "inbox_rules", ["user_id"], unique=False)
    op.create_index(
        "uq_inbox_rules_scope",
        "inbox_rules",
        [
            "user_id",
            "pattern",
            sa.literal_column("coalesce(namespace_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            sa.literal_column("coalesce(app_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
        ],
        unique=True,
    )
    op.execute(_NOTIFY_FUNCTION)
    op.execute(_NOTIFY_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER platform_events_notify ON platform_events")
    op.execute("DROP FUNCTION kepler_notify_platform_events()")
    op.drop_index("uq_inbox_rules_scope", table_name="inbox_rules")
    op.drop_index(op.f("ix_inbox_rules_user_id"), table_name="inbox_rules")
    op.drop_table("inbox_rules")
    op.drop_index(op.f("ix_announcements_namespace_id"), table_name="announcements")
    op.drop_table("announcements")
    op.drop_index("ix_notifications_user_id_id", table_name="notifications")
    op.drop_index(
        "ix_notifications_unread", table_name="notifications", postgresql_where=sa.text("read_at IS NULL")
    )
    op.drop_index(op.f("ix_notifications_event_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_platform_events_position", table_name="platform_events")
    op.drop_index(op.f("ix_platform_events_occurred_at"), table_name="platform_events")
    op.drop_index("ix_platform_events_namespace_id_id", table_name="platform_events")
    op.drop_index("ix_platform_events_kind_id", table_name="platform_events")
    op.drop_index("ix_platform_events_app_id_id", table_name="platform_events")
    op.drop_table("platform_events")
    op.drop_table("event_consumers")
    sa.Enum(name="announcement_severity").drop(op.get_bind())
