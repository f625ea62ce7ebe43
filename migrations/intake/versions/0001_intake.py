"""Patients (with demographic history), intakes and their versions, the referral mirror,
idempotency keys.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import identity_id, timestamp, uuid_id

revision = "intake_0001"
down_revision = None

S = "intake"


def upgrade() -> None:
    op.create_table(
        "patients",
        uuid_id(),
        sa.Column("mrn", sa.String(64), nullable=True),
        sa.Column("given_name", sa.String(200), nullable=False),
        sa.Column("family_name", sa.String(200), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("sex", sa.String(20), nullable=False),
        sa.Column("phone", sa.String(50), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        timestamp("created_at"),
        timestamp("updated_at"),
        sa.UniqueConstraint("mrn", name="uq_patients_mrn"),
        schema=S,
    )
    op.create_table(
        "patient_changes",
        identity_id(sa.Integer),
        sa.Column("patient_id", sa.Uuid(), sa.ForeignKey(f"{S}.patients.id"), nullable=False),
        sa.Column("intake_id", sa.Uuid(), nullable=False),
        timestamp("changed_at"),
        sa.Column("changed_by", sa.String(100), nullable=False),
        sa.Column("previous", pg.JSONB(), nullable=False),
        schema=S,
    )
    op.create_index("ix_patient_changes_patient_id", "patient_changes", ["patient_id"], schema=S)
    op.create_table(
        "intakes",
        uuid_id(),
        sa.Column("patient_id", sa.Uuid(), sa.ForeignKey(f"{S}.patients.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        timestamp("submitted_at"),
        sa.Column("submitted_by", sa.String(100), nullable=False),
        timestamp("updated_at"),
        sa.Column("referral_id", sa.Uuid(), nullable=True),
        sa.Column("referral_destination", sa.String(40), nullable=True),
        sa.Column("referral_priority", sa.String(20), nullable=True),
        sa.Column("referral_status", sa.String(20), nullable=True),
        sa.Column("referral_intake_version", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('submitted', 'routed')", name="ck_intakes_status"),
        sa.CheckConstraint("version >= 1", name="ck_intakes_version"),
        schema=S,
    )
    # The list endpoint pages newest first, optionally by status; MRN filters go through patients.
    op.create_index("ix_intakes_submitted", "intakes", ["submitted_at", "id"], schema=S)
    op.create_index("ix_intakes_status_submitted", "intakes", ["status", "submitted_at", "id"], schema=S)
    op.create_index("ix_intakes_patient_id", "intakes", ["patient_id"], schema=S)
    op.create_table(
        "intake_versions",
        sa.Column("intake_id", sa.Uuid(), sa.ForeignKey(f"{S}.intakes.id"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("patient_id", sa.Uuid(), sa.ForeignKey(f"{S}.patients.id"), nullable=False),
        timestamp("submitted_at"),
        sa.Column("submitted_by", sa.String(100), nullable=False),
        sa.Column("body", pg.JSONB(), nullable=False),
        schema=S,
    )
    op.create_table(
        "referral_mirror",
        sa.Column("referral_id", sa.Uuid(), primary_key=True),
        sa.Column("intake_id", sa.Uuid(), nullable=False),
        sa.Column("destination", sa.String(40), nullable=False),
        sa.Column("priority", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        timestamp("status_at"),
        timestamp("created_at", nullable=True),
        sa.Column("intake_version", sa.Integer(), nullable=True),
        sa.Column("supersedes", sa.Uuid(), nullable=True),
        sa.Column("superseded_by", sa.Uuid(), nullable=True),
        schema=S,
    )
    op.create_index("ix_referral_mirror_intake_id", "referral_mirror", ["intake_id"], schema=S)
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(80), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        timestamp("created_at"),
        timestamp("expires_at"),
        schema=S,
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"], schema=S)


def downgrade() -> None:
    for table in (
        "idempotency_keys",
        "referral_mirror",
        "intake_versions",
        "intakes",
        "patient_changes",
        "patients",
    ):
        op.drop_table(table, schema=S)
