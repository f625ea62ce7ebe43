"""Secrets the clinic must keep but never show again (webhook signing secrets), sealed at rest.

A sealed value is a Fernet token (AES-128-CBC with an HMAC-SHA256 over it, from the
`cryptography` package) made with the current key, `CLINIC_SECRET_KEY`. Values sealed with an
earlier key still open while that key is listed in `CLINIC_SECRET_KEY_PREVIOUS`; `reseal` moves
them to the current key (`clinic migrate` does it for every webhook secret).

Where the key comes from: `CLINIC_SECRET_KEY` when set; otherwise the key file `clinic up`
creates in its data dir (`secret.key`, readable by its owner only) and reuses on every start.
Without either, nothing can be sealed or opened: creating a webhook endpoint answers 503 and
the sender records each delivery's attempt as failed with a clear error.

Nothing here logs or raises a secret: an unreadable value raises `SecretUnreadable`, whose message
names neither the value nor the key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from services.common.settings import KEY_FORM_HINT, Settings, _fernet_key

#: The file in the data dir that holds the key `clinic up` made (when CLINIC_SECRET_KEY is unset).
KEY_FILE = "secret.key"
#: Webhook secrets in plain text start with this (`services.common.access.signing.new_secret`).
_PLAIN_PREFIX = "whsec_"


class SecretUnreadable(Exception):
    """A sealed value none of the configured keys opens (or no key is configured)."""


class NoSecretKey(Exception):
    """No key is configured: nothing can be sealed."""

    def __init__(self) -> None:
        super().__init__(
            "No key to seal secrets with: set CLINIC_SECRET_KEY (`clinic secrets new-key` makes one), "
            "or start with `clinic up`, which keeps one in its data dir."
        )


def new_key() -> str:
    """A fresh key in the form CLINIC_SECRET_KEY takes."""
    return Fernet.generate_key().decode("ascii")


def is_sealed(value: str) -> bool:
    """Whether a stored value is sealed (else it is a plain secret from before sealing)."""
    return not value.startswith(_PLAIN_PREFIX)


class SecretBox:
    """Seals with the first key; opens with any of them."""

    __slots__ = ("_current", "_every")

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise NoSecretKey()
        fernets = [Fernet(key.encode("ascii")) for key in keys]
        self._current = fernets[0]
        self._every = MultiFernet(fernets)

    def seal(self, plain: str) -> str:
        return self._current.encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        if not is_sealed(sealed):
            raise SecretUnreadable("the value is not sealed (run `clinic migrate` with the key configured)")
        try:
            return self._every.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretUnreadable(
                "no configured key opens it (CLINIC_SECRET_KEY and CLINIC_SECRET_KEY_PREVIOUS)"
            ) from exc

    def current_opens(self, sealed: str) -> bool:
        """Whether the current key alone opens it (no re-sealing needed)."""
        try:
            self._current.decrypt(sealed.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def reseal(self, stored: str) -> str:
        """`stored` sealed with the current key: a plain value is sealed, an older key's token is
        opened and sealed again. Raises `SecretUnreadable` if no key opens it."""
        if not is_sealed(stored):
            return self.seal(stored)
        return self.seal(self.open(stored))


def key_file(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def read_key_file(data_dir: Path) -> str | None:
    """The key `clinic up` keeps in `data_dir`, if there is one. A file that holds something
    else is an error naming the file (never its content)."""
    path = key_file(data_dir)
    try:
        raw = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"{path} cannot be read as a key: {type(exc).__name__}") from None
    if not _fernet_key(raw):
        raise ValueError(f"{path} does not hold a key ({KEY_FORM_HINT})")
    return raw


def ensure_key_file(data_dir: Path) -> tuple[str, bool]:
    """The data dir's key, created (owner-only, atomically) if there is none yet; and whether it
    was created now."""
    found = read_key_file(data_dir)
    if found is not None:
        return found, False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = new_key()
    path = key_file(data_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: use theirs
        again = read_key_file(data_dir)
        if again is None:
            raise
        return again, False
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")
    return key, True


def secret_box(settings: Settings) -> SecretBox | None:
    """The box the settings configure: CLINIC_SECRET_KEY (else the data dir's key file) first,
    then CLINIC_SECRET_KEY_PREVIOUS. None when no key is configured."""
    current = settings.secret_key or read_key_file(settings.data_dir)
    if current is None:
        return None
    return _box((current, *settings.secret_keys_previous))


@lru_cache(maxsize=8)
def _box(keys: tuple[str, ...]) -> SecretBox:
    return SecretBox(keys)
