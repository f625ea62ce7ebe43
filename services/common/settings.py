"""Typed settings, read once from the environment.

Every setting has a default that works for `clinic up` on one machine; the README lists them all.
"""

from __future__ import annotations

import base64
import math
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingError(ValueError):
    """A bad environment value. The message names the variable, the value and what is allowed;
    `clinic` prints it as one line and exits with code 2."""

    def __init__(self, name: str, raw: str, allowed: str) -> None:
        super().__init__(f"{name}={raw!r} is not allowed: {allowed}")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(name: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    raw = _env(name, str(default))
    allowed = f"an integer from {minimum}" + (f" to {maximum}" if maximum is not None else " up")
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(name, raw, allowed) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise SettingError(name, raw, allowed)
    return value


def _port(name: str, default: int) -> int:
    return _int(name, default, minimum=1, maximum=65535)


def _float(name: str, default: float, *, zero_allowed: bool = False) -> float:
    raw = _env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value > 0 or (zero_allowed and value == 0))):
        raise SettingError(name, raw, "a number of 0 or more" if zero_allowed else "a number greater than 0")
    return value


def _int_list(name: str, default: str, *, minimum: int) -> tuple[int, ...]:
    raw = _env(name, default)
    allowed = f"comma-separated integers, each at least {minimum}, e.g. {default}"
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingError(name, raw, allowed) from None
    if not values or any(v < minimum for v in values):
        raise SettingError(name, raw, allowed)
    return values


def _str_list(name: str, default: str = "") -> tuple[str, ...]:
    return tuple(part.strip() for part in _env(name, default).split(",") if part.strip())


def _time_zone(name: str, default: str) -> str:
    raw = _env(name, default)
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingError(name, raw, "an IANA time zone such as Europe/London") from None
    return raw


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _env(name, default)
    if raw.lower() not in choices:
        raise SettingError(name, raw, "one of " + ", ".join(choices))
    return raw.lower()


#: The URL schemes the services' driver (asyncpg) speaks; anything else is refused by name.
DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


def _database_url(name: str) -> str | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower() not in DATABASE_SCHEMES or not rest:
        shown = f"{scheme}://..." if sep else raw  # never echo a password back
        others = " and ".join(f"{s}://" for s in DATABASE_SCHEMES[1:])
        raise SettingError(name, shown, f"postgresql://user:pass@host:port/db ({others} accepted too)")
    return raw


def _signing_secret(name: str) -> str | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except ValueError:
        key = b""
    if not raw.startswith("whsec_") or not key:
        raise SettingError(name, "whsec_..." if raw.startswith("whsec_") else "(hidden)", "whsec_ and base64")
    return raw


def _fernet_key(raw: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(raw.encode("ascii"))) == 32 and len(raw) == 44
    except (ValueError, UnicodeEncodeError):
        return False


KEY_FORM_HINT = "44 characters of URL-safe base64 (32 bytes), e.g. from `clinic secrets new-key`"


def _secret_key(name: str) -> str | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not _fernet_key(raw):
        raise SettingError(name, "(hidden)", KEY_FORM_HINT)
    return raw


def _secret_keys(name: str) -> tuple[str, ...]:
    keys = _str_list(name)
    if not all(_fernet_key(key) for key in keys):
        raise SettingError(name, "(hidden)", "comma-separated keys, each " + KEY_FORM_HINT)
    return keys


def default_data_dir() -> Path:
    """`./.clinic`, except as root: the embedded server then opens every parent directory to a
    system user, so the data must not live under /root."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/clinic")
    return Path(".clinic")


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "console")


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None
    data_dir: Path
    log_format: str
    log_level: str
    host: str
    intake_port: int
    referral_port: int
    pool_size: int
    pool_overflow: int
    db_statement_timeout_seconds: float
    # queue
    queue_batch_size: int
    queue_lease_seconds: float
    queue_poll_seconds: float
    queue_max_attempts: int
    queue_backoff_base_seconds: float
    queue_backoff_max_seconds: float
    queue_retention_hours: int
    # intake
    idempotency_hours: int
    max_body_bytes: int
    # triage and service levels
    chronic_weeks: int
    severe_pain_threshold: int
    procedure_window_weeks: int
    clinic_time_zone: str
    """IANA name of the clinic's zone: its date is `today` for triage, validation and follow-ups."""
    sla_stat_minutes: int
    sla_urgent_hours: int
    sla_routine_days: int
    follow_up_offsets_days: tuple[int, ...]
    follow_up_poll_seconds: float
    # webhooks
    webhook_allow_hosts: tuple[str, ...]
    webhook_retry_schedule: tuple[int, ...]
    webhook_timeout_seconds: float
    webhook_disable_after_days: int
    webhook_concurrency_per_endpoint: int
    inbound_webhook_secret: str | None
    # FHIR: the base of the clinic's own CodeSystems, Questionnaire and identifier systems, and the
    # intake service's FHIR base as referral resources link to it (None: from host and port).
    fhir_canonical_base: str = "https://clinic.example.org/fhir"
    intake_fhir_base: str | None = None
    #: How long a looked-up API key is trusted without asking the database: a revoked key keeps
    #: working for at most this long in each running process.
    api_key_cache_seconds: float = 5.0
    # staff sign-in and pages
    session_idle_minutes: int = 15
    session_max_hours: int = 12
    intake_public_url: str = ""
    referral_public_url: str = ""
    #: How long the access audit keeps its rows (6 years: the HIPAA documentation period).
    audit_retention_days: int = 6 * 366
    #: Refused keys (401) allowed per client address and per key prefix in a minute; then 429.
    auth_failure_limit: int = 30
    #: The key that seals webhook signing secrets at rest (`CLINIC_SECRET_KEY`). None: the key
    #: `clinic up` keeps in the data dir, if there is one (see `services/common/access/secret_box.py`).
    secret_key: str | None = field(default=None, repr=False)
    #: Keys that sealed secrets before the current one (`CLINIC_SECRET_KEY_PREVIOUS`): still read,
    #: never written; `clinic migrate` re-seals every secret with the current key.
    secret_keys_previous: tuple[str, ...] = field(default=(), repr=False)

    @property
    def log_json(self) -> bool:
        return self.log_format == "json"


def load_settings() -> Settings:
    """Every variable read and checked; the first bad one raises `SettingError`."""
    return Settings(
        database_url=_database_url("CLINIC_DATABASE_URL"),
        data_dir=Path(_env("CLINIC_DATA_DIR", str(default_data_dir()))),
        log_format=_choice("CLINIC_LOG_FORMAT", "console" if sys.stderr.isatty() else "json", LOG_FORMATS),
        log_level=_choice("CLINIC_LOG_LEVEL", "info", LOG_LEVELS).upper(),
        host=_env("CLINIC_HOST", "127.0.0.1"),
        intake_port=_port("CLINIC_INTAKE_PORT", 8001),
        referral_port=_port("CLINIC_REFERRAL_PORT", 8002),
        pool_size=_int("CLINIC_DB_POOL_SIZE", 10),
        # No overflow by default: on two cores, 20 busy connections answered 10% fewer intakes than
        # 10 (the server's backends contend; the pool queues the rest more cheaply). Issue 17.
        pool_overflow=_int("CLINIC_DB_POOL_OVERFLOW", 0, minimum=0),
        db_statement_timeout_seconds=_float("CLINIC_DB_STATEMENT_TIMEOUT_SECONDS", 30.0, zero_allowed=True),
        queue_batch_size=_int("CLINIC_QUEUE_BATCH_SIZE", 50),
        queue_lease_seconds=_float("CLINIC_QUEUE_LEASE_SECONDS", 60.0),
        queue_poll_seconds=_float("CLINIC_QUEUE_POLL_SECONDS", 2.0),
        queue_max_attempts=_int("CLINIC_QUEUE_MAX_ATTEMPTS", 8),
        queue_backoff_base_seconds=_float("CLINIC_QUEUE_BACKOFF_BASE_SECONDS", 1.0),
        queue_backoff_max_seconds=_float("CLINIC_QUEUE_BACKOFF_MAX_SECONDS", 600.0),
        queue_retention_hours=_int("CLINIC_QUEUE_RETENTION_HOURS", 168),
        idempotency_hours=_int("CLINIC_IDEMPOTENCY_HOURS", 24),
        max_body_bytes=_int("CLINIC_MAX_BODY_BYTES", 256 * 1024),
        chronic_weeks=_int("CLINIC_TRIAGE_CHRONIC_WEEKS", 12),
        severe_pain_threshold=_int("CLINIC_TRIAGE_SEVERE_PAIN_THRESHOLD", 7),
        procedure_window_weeks=_int("CLINIC_TRIAGE_PROCEDURE_WINDOW_WEEKS", 26),
        clinic_time_zone=_time_zone("CLINIC_TIME_ZONE", "UTC"),
        sla_stat_minutes=_int("CLINIC_SLA_STAT_MINUTES", 60),
        sla_urgent_hours=_int("CLINIC_SLA_URGENT_HOURS", 24),
        sla_routine_days=_int("CLINIC_SLA_ROUTINE_DAYS", 14),
        follow_up_offsets_days=_int_list("CLINIC_FOLLOW_UP_OFFSETS_DAYS", "14,42,91,182", minimum=0),
        follow_up_poll_seconds=_float("CLINIC_FOLLOW_UP_POLL_SECONDS", 60.0),
        webhook_allow_hosts=_str_list("CLINIC_WEBHOOK_ALLOW_HOSTS"),
        webhook_retry_schedule=_int_list(
            "CLINIC_WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000", minimum=0
        ),
        webhook_timeout_seconds=_float("CLINIC_WEBHOOK_TIMEOUT_SECONDS", 15.0),
        webhook_disable_after_days=_int("CLINIC_WEBHOOK_DISABLE_AFTER_DAYS", 5),
        webhook_concurrency_per_endpoint=_int("CLINIC_WEBHOOK_CONCURRENCY_PER_ENDPOINT", 2),
        inbound_webhook_secret=_signing_secret("CLINIC_INBOUND_WEBHOOK_SECRET"),
        fhir_canonical_base=_env("CLINIC_FHIR_CANONICAL_BASE", "https://clinic.example.org/fhir").rstrip("/"),
        audit_retention_days=_int("CLINIC_AUDIT_RETENTION_DAYS", 6 * 366),
        auth_failure_limit=_int("CLINIC_AUTH_FAILURE_LIMIT", 30),
        secret_key=_secret_key("CLINIC_SECRET_KEY"),
        secret_keys_previous=_secret_keys("CLINIC_SECRET_KEY_PREVIOUS"),
        intake_fhir_base=os.environ.get("CLINIC_INTAKE_FHIR_BASE", "").strip().rstrip("/") or None,
        api_key_cache_seconds=_float("CLINIC_API_KEY_CACHE_SECONDS", 5.0, zero_allowed=True),
        session_idle_minutes=_int("CLINIC_SESSION_IDLE_MINUTES", 15),
        session_max_hours=_int("CLINIC_SESSION_MAX_HOURS", 12),
        intake_public_url=_env("CLINIC_INTAKE_PUBLIC_URL", ""),
        referral_public_url=_env("CLINIC_REFERRAL_PUBLIC_URL", ""),
    )


@cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
