"""Fixtures on real PostgreSQL: `CLINIC_TEST_DATABASE_URL` when set, else an embedded server.

One fresh database per test session, migrated by the same code `clinic migrate` runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from litestar import Litestar
from sqlalchemy import Row, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access.auth import create_api_key
from services.common.db.engine import asyncpg_url, create_engine, libpq_url
from services.common.db.migrate import upgrade_all
from services.common.settings import Settings, load_settings

MakeKey = Callable[..., Awaitable[str]]

# The key that seals webhook secrets: one for the whole run (and the processes tests start, which
# inherit the environment), as `clinic up` keeps one in its data dir.
os.environ.setdefault("CLINIC_SECRET_KEY", Fernet.generate_key().decode())


def embedded_data_dir() -> Path:
    """A data dir the embedded server's system user can reach (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="clinic-test-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """An admin URL on the test server (the machine's, or an embedded one started here)."""
    configured = os.environ.get("CLINIC_TEST_DATABASE_URL")
    if configured:
        yield asyncpg_url(configured)
        return
    from services.common.db.embedded import start_embedded, stop_embedded

    data_dir = embedded_data_dir()
    yield asyncpg_url(start_embedded(data_dir))
    stop_embedded(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    async with migrated_database(server_url, "clinic_test") as url:
        yield url


async def admin_execute(server_url: str, statement: str) -> None:
    """Run one statement on the test server's admin database, on a connection of its own."""
    admin = await asyncpg.connect(libpq_url(server_url))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@asynccontextmanager
async def empty_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A fresh database on the test server, with no schema yet; dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await admin_execute(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def migrated_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A fresh database on the test server, migrated; dropped at the end."""
    async with empty_database(server_url, prefix) as url:
        engine = create_engine(url, null_pool=True)
        await upgrade_all(engine)
        await engine.dispose()
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, null_pool=True)
    # Make the first connection here, in the session's loop: SQLAlchemy guards an engine's first
    # connect with an asyncio lock, which would otherwise bind to whichever loop connects first
    # (Litestar's AsyncTestClient runs an app's lifespan, and so its workers, in a portal thread).
    async with eng.connect():
        pass
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """Settings as `clinic up` would read them, pointed at the test database, with fast polling."""
    base = load_settings()
    return dataclasses.replace(
        base,
        database_url=database_url,
        log_format="json",
        queue_poll_seconds=0.2,
        queue_lease_seconds=5.0,
        queue_backoff_base_seconds=0.05,
        queue_backoff_max_seconds=0.5,
        follow_up_poll_seconds=0.2,
        webhook_allow_hosts=("127.0.0.1", "localhost"),
    )


@pytest.fixture
async def make_key(engine: AsyncEngine) -> MakeKey:
    """Create an API key as `clinic keys create` does; return the key."""

    async def make(role: str, destination: str | None = None, name: str | None = None) -> str:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            key, _ = await create_api_key(
                session, role=role, destination=destination, name=name or f"{role}-{uuid.uuid4().hex[:6]}"
            )
            await session.commit()
        return key

    return make


@asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """Run `app` (lifespan, so its workers too) in this test's event loop and talk HTTP to it."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:
        # Entered and exited in this one task: the lifespan's cancel scopes require it, and
        # pytest-asyncio sets a fixture up and tears it down in different tasks.
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run_lifespan())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        await task  # raises the startup failure
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        stop.set()
        await task


async def query(engine: AsyncEngine, sql: str, /, **params: Any) -> list[Row[Any]]:
    """The rows of one SQL statement with `params` bound (`:name`), in a transaction of its own."""
    async with engine.begin() as conn:
        return list(await conn.execute(text(sql), params))


async def query_value(engine: AsyncEngine, sql: str, /, **params: Any) -> Any:
    """The one value of a statement that returns exactly one row of one column."""
    [(value,)] = await query(engine, sql, **params)
    return value


async def plan_without_statistics(
    engine: AsyncEngine, table: str, fill: str, sql: str, params: dict[str, Any]
) -> str:
    """The plan of `sql` (bound with `params`) on a fresh copy of `table` ("schema.name"), with
    its indexes, filled by `fill` (an INSERT into `pg_temp.<name>`) and never analysed: what the
    planner does on a server whose autovacuum has not run yet. Nothing is kept."""
    name = table.split(".")[1]
    async with engine.connect() as conn:
        await conn.execute(text(f"CREATE TEMP TABLE {name} (LIKE {table} INCLUDING ALL)"))
        await conn.execute(text(fill))
        explained = await conn.execute(text("EXPLAIN " + sql.replace(table, f"pg_temp.{name}")), params)
        plan = explained.scalars().all()
        await conn.rollback()
    return "\n".join(plan)


async def eventually(
    check: Callable[[], Awaitable[Any] | Any], *, within: float = 20.0, what: str = ""
) -> Any:
    """Poll `check` (plain or async) until it returns something truthy, and return that; fail at
    the deadline, saying `what` was awaited."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what or check}")
        await asyncio.sleep(0.05)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


REPO_ROOT = Path(__file__).resolve().parents[1]
#: The command line of `clinic`, as the processes tests start run it.
CLINIC = (sys.executable, "-m", "services.cli")


def clinic_env(database_url: str) -> dict[str, str]:
    """This process's environment, for a `clinic` command on `database_url` logging JSON."""
    return {**os.environ, "CLINIC_DATABASE_URL": database_url, "CLINIC_LOG_FORMAT": "json"}


def run_clinic(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`clinic ARGS...` as a process, to its end; stdout and stderr captured as text."""
    return subprocess.run(
        [*CLINIC, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def clinic_on(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`clinic ARGS...` on the database at `database_url`, to its end."""
    return run_clinic(*args, env=clinic_env(database_url))


def clinic_output(*args: str, env: dict[str, str]) -> str:
    """What `clinic ARGS...` prints, stripped; failing the test if it fails."""
    result = run_clinic(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def start_clinic(
    *args: str, env: dict[str, str], stdout: Any = subprocess.DEVNULL, stderr: Any = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """`clinic ARGS...` started as a process and left running; its output discarded unless
    `stdout`/`stderr` say where it goes (as `subprocess.Popen` takes them)."""
    return subprocess.Popen([*CLINIC, *args], cwd=REPO_ROOT, env=env, stdout=stdout, stderr=stderr)
