"""Webhook signing secrets sealed at rest: every plain `secret` and `previous_secret` is sealed
with the configured key (CLINIC_SECRET_KEY, else the key `clinic up` keeps in its data dir).

With plain secrets stored and no key configured this migration stops with a message saying how
to configure one; nothing is changed, and the next `clinic migrate` (with a key) carries on. A
database without endpoints needs no key.

Downgrade opens every secret again (it needs the key that sealed them).
"""

import sqlalchemy as sa
from alembic import op

from services.common.access.secret_box import SecretBox, secret_box
from services.common.settings import get_settings
from services.referral.webhooks.sealing import reseal_webhook_secrets

revision = "webhooks_0003"
down_revision = "webhooks_0002"


def _box() -> SecretBox | None:
    return secret_box(get_settings())


def upgrade() -> None:
    reseal_webhook_secrets(op.get_bind(), _box(), plain_only=True)


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, secret, previous_secret FROM referral.webhook_endpoints FOR UPDATE")
    ).all()
    if not rows:
        return
    box = _box()
    if box is None:
        raise RuntimeError(
            "Opening the sealed webhook secrets needs the key that sealed them (CLINIC_SECRET_KEY)."
        )
    for row in rows:
        conn.execute(
            sa.text(
                "UPDATE referral.webhook_endpoints SET secret = :secret, previous_secret = :previous WHERE id = :id"
            ),
            {
                "id": row.id,
                "secret": box.open(row.secret),
                "previous": None if row.previous_secret is None else box.open(row.previous_secret),
            },
        )
