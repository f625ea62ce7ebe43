"""API keys may carry an expiry: after it the key is refused like a revoked one.

Revision ID: access_0004
Revises: access_0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "access_0004"
down_revision = "access_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True), schema="access"
    )


def downgrade() -> None:
    op.drop_column("api_keys", "expires_at", schema="access")
