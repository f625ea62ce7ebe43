"""Sealing the endpoints' signing secrets at rest, row by row: the migration that sealed the plain
ones (`webhooks_0003`) and `clinic migrate`, which re-seals every secret still under an earlier key
(the last step of a key rotation). Both run on the migrator's (synchronous) connection."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from sqlalchemy import Connection, text

from services.common.access.secret_box import NoSecretKey, SecretBox, SecretUnreadable, is_sealed

log = structlog.get_logger(__name__)

_ROWS = text(
    "SELECT id, secret, previous_secret FROM referral.webhook_endpoints ORDER BY created_at, id FOR UPDATE"
)
_WRITE = text(
    "UPDATE referral.webhook_endpoints SET secret = :secret, previous_secret = :previous WHERE id = :id"
)


class PlainSecretsWithoutKey(RuntimeError):
    """Plain secrets are stored and no key is configured to seal them."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"{count} webhook endpoint(s) keep their signing secret in plain text and no key is "
            f"configured to seal them. {NoSecretKey()} Then migrate again."
        )


@dataclass
class Resealed:
    sealed: int = 0
    unreadable: list[str] = field(default_factory=list)


def _needs(box: SecretBox, value: str | None, plain_only: bool) -> bool:
    if value is None:
        return False
    if not is_sealed(value):
        return True
    return not plain_only and not box.current_opens(value)


def reseal_webhook_secrets(
    connection: Connection, box: SecretBox | None, *, plain_only: bool = False
) -> Resealed:
    """Seal every plain secret, and (unless `plain_only`) seal again with the current key every
    secret sealed with an earlier one. A secret no configured key opens is left as it is and
    reported by endpoint id. Without a key: plain secrets raise `PlainSecretsWithoutKey`, sealed
    ones are left alone."""
    result = Resealed()
    rows = connection.execute(_ROWS).all()
    if box is None:
        plain = sum(1 for r in rows if not is_sealed(r.secret) or not is_sealed(r.previous_secret or "x"))
        if plain:
            raise PlainSecretsWithoutKey(plain)
        return result
    for row in rows:
        if not (_needs(box, row.secret, plain_only) or _needs(box, row.previous_secret, plain_only)):
            continue
        try:
            secret = box.reseal(row.secret)
            previous = None if row.previous_secret is None else box.reseal(row.previous_secret)
        except SecretUnreadable:
            result.unreadable.append(str(row.id))
            continue
        connection.execute(_WRITE, {"id": row.id, "secret": secret, "previous": previous})
        result.sealed += 1
    if result.unreadable:
        log.error(
            "webhook_secrets_unreadable",
            endpoint_ids=result.unreadable,
            hint="no configured key opens them: put the key that sealed them in CLINIC_SECRET_KEY_PREVIOUS",
        )
    if result.sealed:
        log.info("webhook_secrets_sealed", count=result.sealed)
    return result
