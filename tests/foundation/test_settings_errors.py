"""A bad environment value stops `clinic` at once: one line naming the variable, the value and
what is allowed, exit code 2, no traceback, nothing started."""

from __future__ import annotations

import os

import pytest

from tests.conftest import run_clinic

BAD = [
    ("CLINIC_LOG_LEVEL", "verbose", "debug, info, warning, error, critical"),
    ("CLINIC_LOG_FORMAT", "xml", "json, console"),
    ("CLINIC_DB_POOL_SIZE", "-3", "from 1"),
    ("CLINIC_DB_POOL_SIZE", "0", "from 1"),
    ("CLINIC_DB_POOL_OVERFLOW", "ten", "integer"),
    ("CLINIC_INTAKE_PORT", "70000", "1 to 65535"),
    ("CLINIC_QUEUE_LEASE_SECONDS", "-1", "greater than 0"),
    ("CLINIC_QUEUE_POLL_SECONDS", "soon", "greater than 0"),
    ("CLINIC_QUEUE_BACKOFF_MAX_SECONDS", "nan", "greater than 0"),
    ("CLINIC_WEBHOOK_RETRY_SCHEDULE", "5,-300,1800", "at least 0"),
    ("CLINIC_WEBHOOK_RETRY_SCHEDULE", "5,later", "comma-separated integers"),
    ("CLINIC_FOLLOW_UP_OFFSETS_DAYS", "14,-1", "at least 0"),
    ("CLINIC_DATABASE_URL", "mysql://clinic:secret@db:3306/clinic", "postgresql://user:pass@host:port/db"),
    ("CLINIC_DATABASE_URL", "sqlite:///clinic.db", "postgresql://user:pass@host:port/db"),
    ("CLINIC_INBOUND_WEBHOOK_SECRET", "not-a-secret", "whsec_"),
    ("CLINIC_TIME_ZONE", "Mars/Olympus_Mons", "IANA time zone"),
]


#: `up` for every value; other commands check the same way (one of them shown).
CASES = [(*bad, ["up"]) for bad in BAD] + [
    (*BAD[0], ["keys", "create", "--role", "admin", "--name", "x"]),
    (*BAD[12], ["migrate"]),
]


@pytest.mark.parametrize(
    ("name", "value", "allowed", "command"), CASES, ids=[f"{c[3][0]}-{c[0]}={c[1]}" for c in CASES]
)
def test_a_bad_value_ends_clinic_with_one_line_naming_it(
    name: str, value: str, allowed: str, command: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINIC_")}
    env[name] = value
    result = run_clinic(*command, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert name in lines[0] and allowed in lines[0], lines[0]
    if name == "CLINIC_DATABASE_URL":
        assert "secret" not in lines[0]  # a password never echoes back
        assert value.split("://")[0] in lines[0]  # the refused scheme is named
    elif name != "CLINIC_INBOUND_WEBHOOK_SECRET":
        assert repr(value) in lines[0]
