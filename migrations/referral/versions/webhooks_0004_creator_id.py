"""A webhook endpoint records its creator's id beside the name: the key's (or staff account's)
id. Null for endpoints made before.
"""

from migrations.columns import add_actor_ids, drop_actor_ids

revision = "webhooks_0004"
down_revision = "webhooks_0003"

COLUMNS = (("webhook_endpoints", "created_by_id"),)


def upgrade() -> None:
    add_actor_ids("referral", COLUMNS)


def downgrade() -> None:
    drop_actor_ids("referral", COLUMNS)
