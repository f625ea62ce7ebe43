"""Staff accounts, their sign-in sessions, and the record of every sign-in, sign-out and failure.

Revision ID: access_0002
Revises: access_0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "access_0002"
down_revision = "access_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("destination", sa.String(40), nullable=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('front_desk', 'specialist', 'clinician', 'admin')", name="ck_users_role"
        ),
        sa.CheckConstraint("(role = 'specialist') = (destination IS NOT NULL)", name="ck_users_destination"),
        schema="access",
    )
    op.create_index("uq_users_email", "users", [sa.text("lower(email)")], unique=True, schema="access")
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("access.users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        schema="access",
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"], schema="access")
    op.create_table(
        "sign_in_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("outcome", sa.String(30), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        schema="access",
    )
    op.create_index("ix_sign_in_events_email_at", "sign_in_events", ["email", "at"], schema="access")
    op.create_index(
        "ix_sign_in_events_client_address_at", "sign_in_events", ["client_address", "at"], schema="access"
    )
    # Append-only: the record of who signed in is never edited.
    op.execute(
        """
        CREATE FUNCTION access.sign_in_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'access.sign_in_events is append-only'; END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER sign_in_events_append_only BEFORE UPDATE OR DELETE ON access.sign_in_events
        FOR EACH ROW EXECUTE FUNCTION access.sign_in_events_append_only();
        """
    )


def downgrade() -> None:
    op.drop_table("sign_in_events", schema="access")
    op.execute("DROP FUNCTION IF EXISTS access.sign_in_events_append_only()")
    op.drop_table("sessions", schema="access")
    op.drop_table("users", schema="access")
