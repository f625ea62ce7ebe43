"""Histories carry the actor's id beside its name: who submitted an intake and each version, and
who made a patient change (the key's or staff account's id; null for inbound forms and older
rows).
"""

from migrations.columns import add_actor_ids, drop_actor_ids

revision = "intake_0003"
down_revision = "intake_0002"

S = "intake"
COLUMNS = (
    ("patient_changes", "changed_by_id"),
    ("intakes", "submitted_by_id"),
    ("intake_versions", "submitted_by_id"),
)


def upgrade() -> None:
    add_actor_ids(S, COLUMNS)


def downgrade() -> None:
    drop_actor_ids(S, COLUMNS)
