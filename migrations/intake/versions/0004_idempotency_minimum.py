"""Idempotency records keep what a replay needs, not the response: the status stays, the intake
id and version it answered with are kept, and the stored body (a whole intake, patient data
included) goes. Existing rows get their intake and version from their stored body first.
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0004"
down_revision = "intake_0003"

S = "intake"


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("resource_id", sa.Uuid(), nullable=True), schema=S)
    op.add_column("idempotency_keys", sa.Column("resource_version", sa.Integer(), nullable=True), schema=S)
    op.execute(
        "UPDATE intake.idempotency_keys SET resource_id = CAST(CAST(response AS jsonb) ->> 'id' AS uuid), "
        "resource_version = CAST(CAST(response AS jsonb) ->> 'version' AS integer) WHERE response IS NOT NULL"
    )
    op.drop_column("idempotency_keys", "response", schema=S)


def downgrade() -> None:
    # The bodies are gone: a downgraded row is replayed as a conflict until it expires.
    op.add_column("idempotency_keys", sa.Column("response", sa.Text(), nullable=True), schema=S)
    op.drop_column("idempotency_keys", "resource_version", schema=S)
    op.drop_column("idempotency_keys", "resource_id", schema=S)
