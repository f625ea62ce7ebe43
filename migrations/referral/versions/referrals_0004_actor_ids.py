"""Histories carry the actor's id beside its name: the key's (or staff account's) id on each
referral history entry and on a follow-up marked done. Null for triage itself and older rows.

Revision ID: referrals_0004
Revises: referrals_0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "referrals_0004"
down_revision = "referrals_0003"
branch_labels = None
depends_on = None

S = "referral"


def upgrade() -> None:
    op.add_column("referral_history", sa.Column("by_id", sa.Uuid(), nullable=True), schema=S)
    op.add_column("follow_ups", sa.Column("done_by_id", sa.Uuid(), nullable=True), schema=S)


def downgrade() -> None:
    op.drop_column("follow_ups", "done_by_id", schema=S)
    op.drop_column("referral_history", "by_id", schema=S)
