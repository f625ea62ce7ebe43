"""The event queue: events, permanent event keys, subscriptions, deliveries, consumer inboxes.

Revision ID: queue_0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "queue_0001"
down_revision = None
branch_labels = None
depends_on = None

# Deliveries churn (insert, update, delete per event): vacuum them early and often.
CHURN = (
    "autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, "
    "autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0, fillfactor = 80"
)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Uuid(), nullable=False),
        sa.Column("payload", pg.JSONB(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_key", sa.Text(), nullable=True),
        schema="queue",
    )
    op.create_index("ix_events_occurred_at", "events", ["occurred_at"], schema="queue")
    op.create_index("ix_events_subject", "events", ["subject"], schema="queue")
    # Kept for good (never pruned with the events): publishing with a seen key is a no-op forever.
    op.create_table(
        "event_keys",
        sa.Column("event_key", sa.Text(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema="queue",
    )
    op.create_table(
        "subscriptions",
        sa.Column("consumer", sa.Text(), primary_key=True),
        sa.Column("event_type", sa.Text(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema="queue",
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "event_id", sa.Uuid(), sa.ForeignKey("queue.events.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("available_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'done', 'dead')", name="ck_deliveries_status"),
        sa.UniqueConstraint("event_id", "consumer", name="uq_deliveries_event_consumer"),
        schema="queue",
    )
    op.create_index(
        "ix_deliveries_ready",
        "deliveries",
        ["consumer", "available_at"],
        schema="queue",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_deliveries_finished",
        "deliveries",
        ["updated_at"],
        schema="queue",
        postgresql_where=sa.text("status = 'done'"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema="queue",
    )
    op.execute(f"ALTER TABLE queue.deliveries SET ({CHURN})")
    op.execute(f"ALTER TABLE queue.events SET ({CHURN.replace(', fillfactor = 80', '')})")


def downgrade() -> None:
    for table in ("inbox", "deliveries", "subscriptions", "event_keys", "events"):
        op.drop_table(table, schema="queue")
