"""`queue.owed`: every delivery not yet handled, whether it waits in `deliveries` (pending or
dead) or sits in a worker's claim (pending: it is handled, or put back, from there). The one
definition of "owed" that depth, retention and redaction read.
"""

from alembic import op

revision = "queue_0004"
down_revision = "queue_0003"


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW queue.owed AS
        SELECT d.consumer, d.event_id, d.status, d.created_at FROM queue.deliveries d
        UNION ALL
        SELECT c.consumer, u.event_id, 'pending', u.created_at
        FROM queue.claims c, unnest(c.event_ids, c.created_ats) AS u(event_id, created_at)
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW queue.owed")
