"""Histories carry the actor's id beside its name: who submitted an intake and each version, and
who made a patient change (the key's or staff account's id; null for inbound forms and older
rows).

Revision ID: intake_0003
Revises: intake_0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0003"
down_revision = "intake_0002"
branch_labels = None
depends_on = None

S = "intake"
COLUMNS = (
    ("patient_changes", "changed_by_id"),
    ("intakes", "submitted_by_id"),
    ("intake_versions", "submitted_by_id"),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        op.add_column(table, sa.Column(column, sa.Uuid(), nullable=True), schema=S)


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        op.drop_column(table, column, schema=S)
