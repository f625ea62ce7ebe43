"""The event queue: events, permanent event keys, subscriptions, deliveries, consumer inboxes."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import identity_id, parent_id, timestamp, uuid_id

revision = "queue_0001"
down_revision = None

# Deliveries churn (inserted, updated at each claim, deleted at ack): vacuum and analyse them early
# and without throttling, and leave room on each page for the updates.
CHURN = (
    "autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, "
    "autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0, fillfactor = 50"
)
# Events and inboxes are append-only until retention deletes them in bulk.
APPEND_THEN_PRUNE = (
    "autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05, "
    "autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0"
)


def upgrade() -> None:
    op.create_table(
        "events",
        uuid_id(),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Uuid(), nullable=False),
        sa.Column("payload", pg.JSONB(), nullable=False),
        timestamp("occurred_at"),
        sa.Column("event_key", sa.Text(), nullable=True),
        # When the queue got it (occurred_at is the domain's time); retention counts from here.
        timestamp("recorded_at", default_now=True),
        schema="queue",
    )
    op.create_index("ix_events_recorded_at", "events", ["recorded_at"], schema="queue")
    op.create_index("ix_events_subject", "events", ["subject"], schema="queue")
    # Kept for good (never pruned with the events): publishing with a seen key is a no-op forever.
    op.create_table(
        "event_keys",
        sa.Column("event_key", sa.Text(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        timestamp("created_at", default_now=True),
        schema="queue",
    )
    op.create_table(
        "subscriptions",
        sa.Column("consumer", sa.Text(), primary_key=True),
        sa.Column("event_type", sa.Text(), primary_key=True),
        timestamp("created_at", default_now=True),
        schema="queue",
    )
    # One row per subscribed consumer while the event is owed to it: a handled delivery is deleted
    # (its record is the consumer's inbox row), a dead one stays until an operator replays it.
    op.create_table(
        "deliveries",
        identity_id(),
        parent_id("event_id", "queue.events"),
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        # Ready time, retry backoff and claim lease in one column: a claim pushes it out by the lease.
        timestamp("available_at", default_now=True),
        timestamp("created_at", default_now=True),
        timestamp("updated_at", default_now=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'dead')", name="ck_deliveries_status"),
        sa.UniqueConstraint("event_id", "consumer", name="uq_deliveries_event_consumer"),
        schema="queue",
    )
    # ix_deliveries_ready is the claim's scan: pending rows per consumer, oldest first.
    # available_at is deliberately not indexed (the claim filters on it), so that a claim, which
    # changes only available_at and attempts, is a HOT update: no index entries, a third of the
    # WAL. ix_deliveries_dead serves the operators' dead-letter views.
    for index, status in (("ix_deliveries_ready", "pending"), ("ix_deliveries_dead", "dead")):
        op.create_index(
            index,
            "deliveries",
            ["consumer", "id"],
            schema="queue",
            postgresql_where=sa.text(f"status = '{status}'"),
        )
    # Each consumer's record of the events it has applied, written with the effect; retention
    # removes it with its event.
    op.create_table(
        "inbox",
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("consumer", sa.Text(), primary_key=True),
        timestamp("applied_at", default_now=True),
        schema="queue",
    )
    op.execute(f"ALTER TABLE queue.deliveries SET ({CHURN})")
    for table in ("events", "inbox", "event_keys"):
        op.execute(f"ALTER TABLE queue.{table} SET ({APPEND_THEN_PRUNE})")


def downgrade() -> None:
    for table in ("inbox", "deliveries", "subscriptions", "event_keys", "events"):
        op.drop_table(table, schema="queue")
