from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import asyncpg

from services.common.db import libpq_url
from tests.conftest import REPO_ROOT


async def test_keys_create_prints_the_key_alone_and_stores_its_hash(database_url: str) -> None:
    env = {**os.environ, "CLINIC_DATABASE_URL": database_url, "CLINIC_LOG_FORMAT": "json"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "keys",
            "create",
            "--role",
            "specialist",
            "--destination",
            "pain_management",
            "--name",
            "dr-pain",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("clk_")
    conn = await asyncpg.connect(libpq_url(database_url))
    try:
        row = await conn.fetchrow(
            "SELECT role, destination, key_hash FROM access.api_keys WHERE name = 'dr-pain'"
        )
    finally:
        await conn.close()
    assert row["role"] == "specialist" and row["destination"] == "pain_management"
    assert row["key_hash"] == hashlib.sha256(lines[0].encode()).hexdigest()


def test_specialist_key_without_destination_is_refused(database_url: str) -> None:
    env = {**os.environ, "CLINIC_DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "keys", "create", "--role", "specialist", "--name", "x"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "destination" in result.stderr
