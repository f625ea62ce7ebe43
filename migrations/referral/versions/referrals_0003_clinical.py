"""A referral keeps the clinical picture of its intake version (complaint, red flags, history,
notes, contact details), so its destination can act on it without reading the intake service.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "referrals_0003"
down_revision = "referrals_0002"


def upgrade() -> None:
    op.add_column("referrals", sa.Column("clinical", JSONB(), nullable=True), schema="referral")


def downgrade() -> None:
    op.drop_column("referrals", "clinical", schema="referral")
