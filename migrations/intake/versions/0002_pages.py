"""For the front desk's pages: the referral's due time and reasons in the mirror, the reason an
intake was amended, and an index to find patients by name and birth date.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import timestamp

revision = "intake_0002"
down_revision = "intake_0001"

S = "intake"


def upgrade() -> None:
    op.add_column("referral_mirror", timestamp("due_by", nullable=True), schema=S)
    op.add_column("referral_mirror", sa.Column("reasons", pg.JSONB(), nullable=True), schema=S)
    op.add_column("intake_versions", sa.Column("change_reason", sa.Text(), nullable=True), schema=S)
    op.create_index(
        "ix_patients_names_birth_date",
        "patients",
        [sa.text("lower(family_name)"), sa.text("lower(given_name)"), "birth_date"],
        schema=S,
    )


def downgrade() -> None:
    op.drop_index("ix_patients_names_birth_date", table_name="patients", schema=S)
    op.drop_column("intake_versions", "change_reason", schema=S)
    op.drop_column("referral_mirror", "reasons", schema=S)
    op.drop_column("referral_mirror", "due_by", schema=S)
