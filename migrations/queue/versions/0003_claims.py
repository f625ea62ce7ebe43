"""Claims: a worker takes a batch of deliveries by moving them out of `deliveries` into one claim
row (their ids, events, attempts so far, creation times and last errors, and when the claim
lapses), in the transaction that picks them. The handling transaction deletes the claim; a claim
whose worker died lapses, and its deliveries are put back with the attempt counted.

This replaces the lease written on every delivery of a batch (an update of each row at claim, then
a delete at ack) by a delete of each row and one insert and one delete per batch.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import identity_id, timestamp

revision = "queue_0003"
down_revision = "queue_0002"

# One row per batch in flight: inserted at each claim, deleted when the batch is handled. A row
# of 50 deliveries is about 2 kB, PostgreSQL's default size for trying to compress it or move it
# out of line (a TOAST table write per claim): kept inline up to a page.
CHURN = (
    "autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, "
    "autovacuum_vacuum_cost_delay = 0, fillfactor = 50, toast_tuple_target = 8160"
)


def upgrade() -> None:
    op.create_table(
        "claims",
        identity_id(),
        sa.Column("consumer", sa.Text(), nullable=False),
        timestamp("lapses_at"),
        sa.Column("deliveries", pg.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("event_ids", pg.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("attempts", pg.ARRAY(sa.Integer()), nullable=False),
        sa.Column("created_ats", pg.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("last_errors", pg.ARRAY(sa.Text()), nullable=False),
        timestamp("created_at", default_now=True),
        schema="queue",
    )
    op.execute(f"ALTER TABLE queue.claims SET ({CHURN})")
    # Deliveries leased the old way (available_at pushed out by their claim) keep their lease and
    # are claimed again after it the new way: nothing to move.


def downgrade() -> None:
    # Deliveries in flight go back to the queue, ready at once, their attempt not counted.
    op.execute(
        """
        INSERT INTO queue.deliveries (id, event_id, consumer, status, attempts, available_at,
                                      created_at, updated_at, last_error)
        SELECT u.id, u.event_id, c.consumer, 'pending', u.attempts, now(), u.created_at, now(), u.last_error
        FROM queue.claims c,
             unnest(c.deliveries, c.event_ids, c.attempts, c.created_ats, c.last_errors)
                 AS u(id, event_id, attempts, created_at, last_error)
        ON CONFLICT DO NOTHING
        """
    )
    op.drop_table("claims", schema="queue")
