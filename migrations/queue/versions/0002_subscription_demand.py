"""Subscriptions a consumer has no use for right now: `wanted = false` means publish writes no
delivery to that consumer for that event type (the webhook consumer while no enabled endpoint
subscribes to the type). Existing rows stay wanted.
"""

import sqlalchemy as sa
from alembic import op

revision = "queue_0002"
down_revision = "queue_0001"


def upgrade() -> None:
    op.add_column(
        "subscriptions",
        sa.Column("wanted", sa.Boolean(), nullable=False, server_default=sa.true()),
        schema="queue",
    )


def downgrade() -> None:
    op.drop_column("subscriptions", "wanted", schema="queue")
