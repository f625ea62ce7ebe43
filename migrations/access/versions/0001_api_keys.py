"""API keys: only a hash of each key is stored.

Revision ID: access_0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "access_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("destination", sa.String(40), nullable=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('front_desk', 'specialist', 'clinician', 'admin')", name="ck_api_keys_role"
        ),
        sa.CheckConstraint(
            "(role = 'specialist') = (destination IS NOT NULL)", name="ck_api_keys_destination"
        ),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        schema="access",
    )


def downgrade() -> None:
    op.drop_table("api_keys", schema="access")
