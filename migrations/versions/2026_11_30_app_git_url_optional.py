"""app git_url optional: an app that only deploys images has no repository

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("apps", "git_url", existing_type=sa.String(length=2048), nullable=True)
    op.execute("UPDATE apps SET git_url = NULL WHERE git_url = ''")  # adopted apps stored '' for "none"


def downgrade() -> None:
    op.execute("UPDATE apps SET git_url = '' WHERE git_url IS NULL")
    op.alter_column("apps", "git_url", existing_type=sa.String(length=2048), nullable=False)
