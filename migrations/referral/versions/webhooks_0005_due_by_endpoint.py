"""An endpoint's pending deliveries in the order they come due: the sender's next delivery for an
endpoint is one index step, not a sort of the endpoint's whole backlog.

Before it, `ix_webhook_deliveries_due` (every endpoint's) and the endpoint index were combined
and every pending delivery of the endpoint sorted, per delivery sent: 4.4 ms with 1,600 waiting,
growing with the backlog (issue 17). Every statement that looked for due deliveries now names
the endpoint, so the every-endpoint index is dropped: it was only upkeep on each delivery
written or rescheduled.
"""

import sqlalchemy as sa
from alembic import op

revision = "webhooks_0005"
down_revision = "webhooks_0004"

SCHEMA = "referral"
INDEX = "ix_webhook_deliveries_endpoint_due"
OLD_INDEX = "ix_webhook_deliveries_due"
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index(
        INDEX,
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        schema=SCHEMA,
        postgresql_where=PENDING,
    )
    op.drop_index(OLD_INDEX, "webhook_deliveries", schema=SCHEMA)


def downgrade() -> None:
    op.create_index(
        OLD_INDEX, "webhook_deliveries", ["next_attempt_at"], schema=SCHEMA, postgresql_where=PENDING
    )
    op.drop_index(INDEX, "webhook_deliveries", schema=SCHEMA)
