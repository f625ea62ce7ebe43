"""Referrals, their status history and follow-ups."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import identity_id, parent_id, timestamp, uuid_id

revision = "referrals_0001"
down_revision = None
branch_labels = ("referrals",)


def upgrade() -> None:
    op.create_table(
        "referrals",
        uuid_id(),
        sa.Column("intake_id", sa.Uuid(), nullable=False),
        sa.Column("intake_version", sa.Integer(), nullable=False),
        sa.Column("patient", pg.JSONB(), nullable=False),
        sa.Column("destination", sa.String(40), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("priority_rank", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reasons", pg.JSONB(), nullable=False),
        sa.Column("ruleset_version", sa.String(20), nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
        timestamp("due_by"),
        timestamp("accepted_at", nullable=True),
        timestamp("scheduled_at", nullable=True),
        timestamp("appointment_at", nullable=True),
        timestamp("closed_at", nullable=True),
        sa.Column("close_reason", sa.Text()),
        sa.Column("supersedes", sa.Uuid(), sa.ForeignKey("referral.referrals.id")),
        sa.Column("superseded_by", sa.Uuid(), sa.ForeignKey("referral.referrals.id")),
        sa.CheckConstraint(
            "destination IN ('urgent_care', 'pain_management', 'regenerative_medicine', 'clinician_review')",
            name="destination",
        ),
        sa.CheckConstraint("priority IN ('stat', 'urgent', 'routine')", name="priority"),
        sa.CheckConstraint(
            "status IN ('needs_review', 'requested', 'accepted', 'declined', 'scheduled', 'completed', "
            "'no_show', 'cancelled')",
            name="status",
        ),
        schema="referral",
    )
    op.create_index("ix_referrals_intake_id", "referrals", ["intake_id"], schema="referral")
    op.create_index(
        "ix_referrals_worklist",
        "referrals",
        ["destination", "status", "priority_rank", "due_by", "id"],
        schema="referral",
    )
    op.create_index("ix_referrals_created_at", "referrals", ["created_at"], schema="referral")
    op.create_table(
        "referral_history",
        identity_id(),
        parent_id("referral_id", "referral.referrals"),
        sa.Column("status", sa.String(20), nullable=False),
        timestamp("at"),
        sa.Column("by", sa.String(100), nullable=False),
        sa.Column("note", sa.Text()),
        schema="referral",
    )
    op.create_index("ix_referral_history_referral_id", "referral_history", ["referral_id"], schema="referral")
    op.create_table(
        "follow_ups",
        uuid_id(),
        parent_id("referral_id", "referral.referrals"),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        timestamp("emitted_at", nullable=True),
        timestamp("done_at", nullable=True),
        sa.Column("done_by", sa.String(100)),
        sa.CheckConstraint("status IN ('scheduled', 'due', 'done', 'cancelled')", name="status"),
        sa.UniqueConstraint("referral_id", "due_on", name="uq_follow_ups_referral_id_due_on"),
        schema="referral",
    )
    op.create_index(
        "ix_follow_ups_scheduled",
        "follow_ups",
        ["due_on"],
        schema="referral",
        postgresql_where=sa.text("status = 'scheduled'"),
    )


def downgrade() -> None:
    op.drop_table("follow_ups", schema="referral")
    op.drop_table("referral_history", schema="referral")
    op.drop_table("referrals", schema="referral")
