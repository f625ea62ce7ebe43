from __future__ import annotations

import hashlib
import subprocess

import asyncpg

from services.common.db.engine import libpq_url
from services.common.db.migrate import pending_count
from tests.conftest import clinic_env, clinic_on, empty_database, run_clinic, start_clinic


async def test_keys_create_prints_the_key_alone_and_stores_its_hash(database_url: str) -> None:
    specialist = ("--role", "specialist", "--destination", "pain_management", "--name", "dr-pain")
    result = clinic_on(database_url, "keys", "create", *specialist)
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
    result = clinic_on(database_url, "keys", "create", "--role", "specialist", "--name", "x")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "destination" in result.stderr


async def test_keys_create_waits_for_migrations_then_makes_the_key(server_url: str) -> None:
    """Right after `clinic up &` the schema may not exist yet: the key command says it waits,
    and makes the key once the migrations are in."""
    async with empty_database(server_url, "clinic_keys_wait") as url:
        env = clinic_env(url)
        admin = ("--role", "admin", "--name", "early")
        keys = start_clinic("keys", "create", *admin, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert keys.stderr is not None
        waiting = keys.stderr.readline().decode()
        assert waiting.startswith("clinic keys: waiting up to 60 s for the database: migrations not applied")
        migrate = run_clinic("migrate", env=env)
        assert migrate.returncode == 0, migrate.stderr
        revisions = pending_count({})  # every revision of every history
        assert f"clinic migrate: {revisions} migration(s) applied; every schema is at head" in migrate.stderr
        out, err = (stream.decode() for stream in keys.communicate(timeout=120))
        assert keys.returncode == 0, err
        assert out.startswith("clk_") and len(out.splitlines()) == 1
        assert "Traceback" not in err
