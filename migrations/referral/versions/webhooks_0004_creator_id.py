"""A webhook endpoint records its creator's id beside the name: the key's (or staff account's)
id. Null for endpoints made before.

Revision ID: webhooks_0004
Revises: webhooks_0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "webhooks_0004"
down_revision = "webhooks_0003"
branch_labels = None
depends_on = None

SCHEMA = "referral"


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("created_by_id", sa.Uuid(), nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("webhook_endpoints", "created_by_id", schema=SCHEMA)
