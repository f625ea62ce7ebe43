"""API keys may carry an expiry: after it the key is refused like a revoked one."""

from alembic import op

from migrations.columns import timestamp

revision = "access_0004"
down_revision = "access_0003"


def upgrade() -> None:
    op.add_column("api_keys", timestamp("expires_at", nullable=True), schema="access")


def downgrade() -> None:
    op.drop_column("api_keys", "expires_at", schema="access")
