"""An AMEND-HOLD clinician review names the open referral whose amendment it holds."""

import sqlalchemy as sa
from alembic import op

revision = "referrals_0002"
down_revision = "referrals_0001"


def upgrade() -> None:
    op.add_column(
        "referrals",
        sa.Column("amendment_of", sa.Uuid(), sa.ForeignKey("referral.referrals.id"), nullable=True),
        schema="referral",
    )


def downgrade() -> None:
    op.drop_column("referrals", "amendment_of", schema="referral")
