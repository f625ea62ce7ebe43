"""Webhook endpoints are soft-deleted: DELETE sets `deleted_at`; the row and its delivery history
stay, and nothing reads it as an endpoint any more.
"""

from alembic import op

from migrations.columns import timestamp

revision = "webhooks_0002"
down_revision = "webhooks_0001"

SCHEMA = "referral"


def upgrade() -> None:
    op.add_column("webhook_endpoints", timestamp("deleted_at", nullable=True), schema=SCHEMA)


def downgrade() -> None:
    # Before soft deletes a deleted endpoint had no row: remove them (their history goes with them),
    # else they would come back as live endpoints.
    op.execute("DELETE FROM referral.webhook_endpoints WHERE deleted_at IS NOT NULL")
    op.drop_column("webhook_endpoints", "deleted_at", schema=SCHEMA)
