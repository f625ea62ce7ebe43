"""Webhooks out: endpoints (with a rotating signing secret), deliveries, and every attempt.

An independent root of the referral history (branch `webhooks`), beside the referrals' own.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import identity_id, parent_id, timestamp, uuid_id

revision = "webhooks_0001"
down_revision = None
branch_labels = ("webhooks",)

SCHEMA = "referral"


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        uuid_id(),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("event_types", pg.ARRAY(sa.Text()), nullable=False),
        # NULL: every destination; else only events about these destinations.
        sa.Column("destinations", pg.ARRAY(sa.Text()), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        # During a rotation the replaced secret still signs (a second signature) until it expires.
        sa.Column("previous_secret", sa.Text(), nullable=True),
        timestamp("previous_secret_expires_at", nullable=True),
        timestamp("disabled_at", nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        # Start of the current run of failures; cleared by any success.
        timestamp("first_failure_at", nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        timestamp("created_at", default_now=True),
        timestamp("updated_at", default_now=True),
        sa.CheckConstraint("cardinality(event_types) > 0", name="ck_webhook_endpoints_event_types"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_webhook_endpoints_created_at", "webhook_endpoints", ["created_at", "id"], schema=SCHEMA
    )
    op.create_table(
        "webhook_deliveries",
        uuid_id(),
        parent_id("endpoint_id", f"{SCHEMA}.webhook_endpoints"),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        # The body as sent (thin: ids, destination, priority, status, dates; never patient data).
        sa.Column("payload", pg.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        timestamp("next_attempt_at", default_now=True),
        # Set while a sender holds the delivery; a sender that dies loses it only until then.
        timestamp("leased_until", nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        timestamp("succeeded_at", nullable=True),
        timestamp("created_at", default_now=True),
        timestamp("updated_at", default_now=True),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'dead')", name="ck_webhook_deliveries_status"),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_created",
        "webhook_deliveries",
        ["endpoint_id", "created_at", "id"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_webhook_deliveries_status_created",
        "webhook_deliveries",
        ["status", "created_at", "id"],
        schema=SCHEMA,
    )
    op.create_table(
        "webhook_attempts",
        identity_id(),
        parent_id("delivery_id", f"{SCHEMA}.webhook_deliveries"),
        timestamp("attempted_at", default_now=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("response_excerpt", sa.String(500), nullable=True),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_webhook_attempts_delivery", "webhook_attempts", ["delivery_id", "attempted_at"], schema=SCHEMA
    )
    # Deliveries churn (an update per attempt): vacuum them early.
    op.execute(
        f"ALTER TABLE {SCHEMA}.webhook_deliveries SET (autovacuum_vacuum_scale_factor = 0.02, "
        "fillfactor = 80)"
    )


def downgrade() -> None:
    for table in ("webhook_attempts", "webhook_deliveries", "webhook_endpoints"):
        op.drop_table(table, schema=SCHEMA)
