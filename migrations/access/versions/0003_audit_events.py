"""The access audit: one append-only row per access to patient data and per change.

A trigger refuses UPDATE, DELETE and TRUNCATE. The only deletion it lets through is the retention
purge's: a transaction that has set `clinic.audit_purge_before` may delete rows older than it.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.columns import timestamp

revision = "access_0003"
down_revision = "access_0002"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        timestamp("at", default_now=True),
        sa.Column("service", sa.String(20), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor_name", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=True),
        sa.Column("actor_kind", sa.String(12), nullable=False),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("method", sa.String(10), nullable=True),
        sa.Column("path", sa.String(300), nullable=True),
        sa.Column("resource_type", sa.String(40), nullable=True),
        sa.Column("resource_id", sa.String(200), nullable=True),
        sa.Column("patient_ids", postgresql.ARRAY(sa.Uuid()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("detail", postgresql.JSONB(), nullable=True),
        schema="access",
    )
    op.create_index("ix_audit_events_at_id", "audit_events", ["at", "id"], schema="access")
    op.create_index(
        "ix_audit_events_patient_ids",
        "audit_events",
        ["patient_ids"],
        schema="access",
        postgresql_using="gin",
    )
    op.create_index("ix_audit_events_actor_name", "audit_events", ["actor_name"], schema="access")
    op.execute(
        """
        CREATE FUNCTION access.audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            purge_before text := current_setting('clinic.audit_purge_before', true);
        BEGIN
            IF TG_OP = 'DELETE' AND coalesce(purge_before, '') <> '' THEN
                IF OLD.at < purge_before::timestamptz THEN
                    RETURN OLD;
                END IF;
            END IF;
            RAISE EXCEPTION 'access.audit_events is append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON access.audit_events "
        "FOR EACH ROW EXECUTE FUNCTION access.audit_events_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON access.audit_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION access.audit_events_append_only()"
    )


def downgrade() -> None:
    op.drop_table("audit_events", schema="access")
    op.execute("DROP FUNCTION access.audit_events_append_only()")
