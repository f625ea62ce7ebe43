"""Histories carry the actor's id beside its name: the key's (or staff account's) id on each
referral history entry and on a follow-up marked done. Null for triage itself and older rows.
"""

from migrations.columns import add_actor_ids, drop_actor_ids

revision = "referrals_0004"
down_revision = "referrals_0003"

COLUMNS = (("referral_history", "by_id"), ("follow_ups", "done_by_id"))


def upgrade() -> None:
    add_actor_ids("referral", COLUMNS)


def downgrade() -> None:
    drop_actor_ids("referral", COLUMNS)
