"""API keys: only a hash of each key is stored."""

import sqlalchemy as sa
from alembic import op

from migrations.columns import role_and_destination, timestamp, uuid_id

revision = "access_0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        uuid_id(),
        sa.Column("name", sa.String(100), nullable=False),
        *role_and_destination("api_keys"),
        sa.Column("key_hash", sa.String(64), nullable=False),
        timestamp("created_at", default_now=True),
        timestamp("revoked_at", nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        schema="access",
    )


def downgrade() -> None:
    op.drop_table("api_keys", schema="access")
