"""releases: clusters, immutable releases, deployments and their events, live app status

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 14:15:01.989729
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("api_url", sa.String(length=2048), nullable=True),
        sa.Column("in_cluster", sa.Boolean(), nullable=False),
        sa.Column("ca_data", sa.String(length=16384), nullable=True),
        sa.Column("insecure_skip_tls_verify", sa.Boolean(), nullable=False),
        sa.Column("token_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("client_cert_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("client_key_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clusters")),
        sa.UniqueConstraint("name", name=op.f("uq_clusters_name")),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("cause", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_releases_app_id_apps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_releases_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("app_id", "number", name=op.f("uq_releases_app_id_number")),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("release_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "applying",
                "progressing",
                "succeeded",
                "failed",
                "superseded",
                "rolled_back",
                "cancelled",
                name="deployment_status",
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("message", sa.String(length=2000), nullable=True),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.Uuid(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resource_version", sa.String(length=64), nullable=True),
        sa.Column("replicas", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_deployments_app_id_apps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_deployments_release_id_releases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name=op.f("fk_deployments_requested_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index("ix_deployments_app_id_created_at", "deployments", ["app_id", "created_at"], unique=False)
    op.create_index("ix_deployments_status_updated_at", "deployments", ["status", "updated_at"], unique=False)
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_events_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_events")),
    )
    op.create_index(
        op.f("ix_deployment_events_deployment_id"), "deployment_events", ["deployment_id"], unique=False
    )
    op.add_column(
        "apps", sa.Column("auto_rollback", sa.Boolean(), server_default=sa.text("true"), nullable=False)
    )
    op.add_column("apps", sa.Column("selector", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("apps", sa.Column("scaled_replicas", sa.Integer(), nullable=True))

    op.add_column("apps", sa.Column("current_release", sa.Integer(), nullable=True))
    op.add_column(
        "apps",
        sa.Column(
            "live",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("namespaces", sa.Column("cluster_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_namespaces_cluster_id_clusters"),
        "namespaces",
        "clusters",
        ["cluster_id"],
        ["id"],
        ondelete="RESTRICT",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_namespaces_cluster_id_clusters"), "namespaces", type_="foreignkey")
    op.drop_column("namespaces", "cluster_id")
    op.drop_column("apps", "live")
    op.drop_column("apps", "current_release")
    op.drop_column("apps", "scaled_replicas")
    op.drop_column("apps", "selector")

    op.drop_column("apps", "auto_rollback")
    op.drop_index(op.f("ix_deployment_events_deployment_id"), table_name="deployment_events")
    op.drop_table("deployment_events")
    op.drop_index("ix_deployments_status_updated_at", table_name="deployments")
    op.drop_index("ix_deployments_app_id_created_at", table_name="deployments")
    op.drop_table("deployments")
    op.drop_table("releases")
    op.drop_table("clusters")
    sa.Enum(name="deployment_status").drop(op.get_bind(), checkfirst=True)
