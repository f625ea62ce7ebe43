"""`queue.ready_deliveries(consumer, size)`: the ids of a consumer's next `size` ready deliveries,
oldest first, locked (SKIP LOCKED), found by walking `ix_deliveries_ready` in id order whatever
the planner believes about the table.

Why a function: on a table the planner has no statistics for (never analysed: a fresh install, or
a server whose autovacuum is off), it estimates one or two matching rows for any backlog, and from
about 60,000 pending deliveries on it prefers a bitmap scan of the whole backlog and a sort to the
index walk (measured: 26 ms per claim of 50 at 60,000, each claim reading every pending delivery of
the consumer). A plan made then stays with the connection. A function's own settings apply to the
planning of its statements, so bitmap scans are turned off here and nowhere else. PL/pgSQL keeps
the plan between calls on a connection; it is the generic plan from the first call (by default
PostgreSQL plans at least the first five calls again for their arguments, and keeps doing so
while the generic plan looks dearer).

`ROWS 1`: what the planner of the calling statement assumes the function returns. A batch is at
most 50, few either way, and with the truth (50) a claim planned on a small table joined the batch
to every delivery and every event by hash (a scan of both tables per claim once they grew) where
one row gives index lookups.
"""

from alembic import op

revision = "queue_0005"
down_revision = "queue_0004"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION queue.ready_deliveries(consumer text, size integer) RETURNS SETOF bigint
        LANGUAGE plpgsql VOLATILE ROWS 1
        SET enable_bitmapscan = off
        SET plan_cache_mode = force_generic_plan
        AS $$
        BEGIN
            RETURN QUERY
            SELECT d.id FROM queue.deliveries d
            WHERE d.consumer = ready_deliveries.consumer AND d.status = 'pending'
              AND d.available_at <= now()
            ORDER BY d.id
            LIMIT size
            FOR UPDATE SKIP LOCKED;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION queue.ready_deliveries(text, integer)")
