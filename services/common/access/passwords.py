"""Staff passwords: hashed with Argon2id; at least 12 characters, and not one of the common
passwords shipped in `common-passwords.txt`. A new or reset account gets a temporary password
that must be changed at the first sign-in."""

from __future__ import annotations

import secrets
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12

HASHER = PasswordHasher()  # Argon2id with the library's current parameters
#: Verified against when the email is unknown, so timing does not tell which emails exist.
DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


@cache
def common_passwords() -> frozenset[str]:
    text = (
        resources.files("services.common.access").joinpath("common-passwords.txt").read_text(encoding="utf-8")
    )
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def password_problem(password: str) -> str | None:
    """Why a new password is refused, in words for the person choosing it; None if acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if password.lower() in common_passwords() or len(set(password)) < 4:
        return "This password is too common or too easy to guess; choose another."
    return None


def temporary_password() -> str:
    return secrets.token_urlsafe(12)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
