"""Webhook endpoints are soft-deleted: DELETE sets `deleted_at`; the row and its delivery history
stay, and nothing reads it as an endpoint any more.

Revision ID: webhooks_0002
Revises: webhooks_0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "webhooks_0002"
down_revision = "webhooks_0001"
branch_labels = None
depends_on = None

SCHEMA = "referral"


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True), schema=SCHEMA
    )


def downgrade() -> None:
    # Before soft deletes a deleted endpoint had no row: remove them (their history goes with them),
    # else they would come back as live endpoints.
    op.execute("DELETE FROM referral.webhook_endpoints WHERE deleted_at IS NOT NULL")
    op.drop_column("webhook_endpoints", "deleted_at", schema=SCHEMA)
