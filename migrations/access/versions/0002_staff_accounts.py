"""Staff accounts, their sign-in sessions, and the record of every sign-in, sign-out and failure."""

import sqlalchemy as sa
from alembic import op

from migrations.columns import identity_id, role_and_destination, timestamp, uuid_id

revision = "access_0002"
down_revision = "access_0001"


def upgrade() -> None:
    op.create_table(
        "users",
        uuid_id(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        *role_and_destination("users"),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        timestamp("disabled_at", nullable=True),
        schema="access",
    )
    op.create_index("uq_users_email", "users", [sa.text("lower(email)")], unique=True, schema="access")
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("access.users.id"), nullable=False),
        timestamp("created_at"),
        timestamp("last_seen_at"),
        timestamp("expires_at"),
        timestamp("revoked_at", nullable=True),
        schema="access",
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"], schema="access")
    op.create_table(
        "sign_in_events",
        identity_id(),
        timestamp("at"),
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
