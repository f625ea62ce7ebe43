from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid

import asyncpg
from sqlalchemy.engine import make_url

from services.common.db.engine import libpq_url
from services.common.db.migrate import pending_count
from tests.conftest import REPO_ROOT, run_clinic


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


async def test_keys_create_waits_for_migrations_then_makes_the_key(server_url: str) -> None:
    """Right after `clinic up &` the schema may not exist yet: the key command says it waits,
    and makes the key once the migrations are in."""
    name = f"clinic_keys_wait_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(libpq_url(server_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    env = {**os.environ, "CLINIC_DATABASE_URL": url, "CLINIC_LOG_FORMAT": "json"}
    try:
        keys = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "keys", "create", "--role", "admin", "--name", "early"],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert keys.stderr is not None
        waiting = keys.stderr.readline()
        assert waiting.startswith("clinic keys: waiting up to 60 s for the database: migrations not applied")
        migrate = run_clinic("migrate", env=env)
        assert migrate.returncode == 0, migrate.stderr
        revisions = pending_count({})  # every revision of every history
        assert f"clinic migrate: {revisions} migration(s) applied; every schema is at head" in migrate.stderr
        out, err = keys.communicate(timeout=120)
        assert keys.returncode == 0, err
        assert out.startswith("clk_") and len(out.splitlines()) == 1
        assert "Traceback" not in err
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
