"""The driver's own connection under SQLAlchemy's transaction, for the statements every request
runs (an intake's rows, an event, an audit row).

Measured on the 2-core machine (issue 17): one INSERT sent through SQLAlchemy (`execute` of a
cached `text()` or Core statement: compile-cache lookup, parameter processing, result set-up
and two greenlet switches) cost 1.0-1.15 ms of CPU per transaction, the same INSERT on the
asyncpg connection under it 0.6-0.7 ms. The hot statements therefore go to asyncpg directly,
inside the same transaction as the ORM's work, so they still commit or roll back with it.

A `Statement` keeps the SQL readable with named parameters (`:name`) and sends it positionally
(`$n`), which is what asyncpg takes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_T = TypeVar("_T")
_NAME = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True)
class Statement:
    """SQL with `:name` parameters, rewritten once to asyncpg's `$n` form."""

    sql: str
    text: str = field(init=False)
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        object.__setattr__(self, "text", _NAME.sub(number, self.sql))
        object.__setattr__(self, "names", tuple(names))

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `values` (a missing name is a KeyError, not a NULL)."""
        return [values[name] for name in self.names]


class Driver:
    """The asyncpg connection under a SQLAlchemy connection's transaction, sending `Statement`s.

    A statement that fails because the connection is gone marks the SQLAlchemy connection
    invalid, as SQLAlchemy does when one of its own statements fails so: otherwise closing the
    session would roll back on a dead connection and raise past the request's error handling."""

    def __init__(self, conn: AsyncConnection, raw: asyncpg.Connection) -> None:
        self.conn = conn
        self.raw = raw

    async def _sent(self, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except BaseException:
            if self.raw.is_closed() and not self.conn.invalidated:
                await self.conn.invalidate()
            raise

    async def execute(self, statement: Statement, values: Mapping[str, Any]) -> str:
        return await self._sent(self.raw.execute(statement.text, *statement.args(values)))

    async def executemany(self, statement: Statement, rows: Iterable[Mapping[str, Any]]) -> None:
        await self._sent(self.raw.executemany(statement.text, [statement.args(row) for row in rows]))

    async def fetch(self, statement: Statement, values: Mapping[str, Any]) -> list[asyncpg.Record]:
        return await self._sent(self.raw.fetch(statement.text, *statement.args(values)))

    async def fetchval(self, statement: Statement, values: Mapping[str, Any]) -> Any:
        return await self._sent(self.raw.fetchval(statement.text, *statement.args(values)))

    async def fetchrow(self, statement: Statement, values: Mapping[str, Any]) -> asyncpg.Record | None:
        return await self._sent(self.raw.fetchrow(statement.text, *statement.args(values)))


#: Not an adapter this module knows: any statement through SQLAlchemy begins (a round trip).
_BEGIN_THROUGH_SQLALCHEMY = "SELECT 1"


class _NotBegun(Exception):
    """The adapter could not be asked to begin (see `_begin`)."""


async def _begin(adapted: Any, raw: asyncpg.Connection) -> bool:
    """Have SQLAlchemy's asyncpg adapter send the BEGIN it would send lazily with its first
    statement; whether the connection is in its transaction now (False: not an adapter this
    module knows, the caller begins through SQLAlchemy)."""
    if getattr(adapted, "_transaction", False) is None:
        await adapted._start_transaction()
    return bool(raw.is_in_transaction())


def execute_from_hook(conn: Connection, statement: Statement, values: Mapping[str, Any]) -> None:
    """`statement` on the driver's connection under `conn`'s transaction, from a synchronous
    session hook (one SQLAlchemy runs inside its greenlet: `before_commit`, say); the same
    beginning and the same invalidation as `driver_of` and `Driver`."""
    adapted: Any = conn.connection.dbapi_connection
    raw: asyncpg.Connection = adapted.driver_connection

    async def run(_: asyncpg.Connection) -> None:
        if not await _begin(adapted, raw):
            raise _NotBegun
        await raw.execute(statement.text, *statement.args(values))

    try:
        try:
            adapted.run_async(run)
        except _NotBegun:
            conn.exec_driver_sql(_BEGIN_THROUGH_SQLALCHEMY)
            adapted.run_async(run)
    except BaseException:
        if raw.is_closed() and not conn.invalidated:
            conn.invalidate()
        raise


async def driver_of(db: AsyncSession | AsyncConnection) -> Driver:
    """The asyncpg connection under `db`, its transaction begun (a connection must be in a
    transaction already, `engine.begin()`, so that SQLAlchemy commits it, or in autocommit).

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement; a statement sent
    to the driver before that would run outside the transaction (and commit on its own). So the
    adapter is asked to begin first. A session's pending objects are flushed first, as its own
    `execute` would (autoflush), so the statements see the rows the request has added."""
    if isinstance(db, AsyncSession):
        if db.new or db.dirty or db.deleted:
            await db.flush()
        conn = await db.connection()
    else:
        conn = db
        options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
        autocommit = options.get("isolation_level") == "AUTOCOMMIT"
        if autocommit:  # each statement its own transaction: nothing to begin
            return Driver(conn, (await conn.get_raw_connection()).driver_connection)
        if not conn.in_transaction():
            # SQLAlchemy commits only a transaction it began: the caller must have begun one.
            raise RuntimeError("driver_of(connection) needs the connection in a transaction")
    adapted: Any = (await conn.get_raw_connection()).dbapi_connection
    driver = Driver(conn, adapted.driver_connection)
    if not await driver._sent(_begin(adapted, driver.raw)):
        await conn.exec_driver_sql(_BEGIN_THROUGH_SQLALCHEMY)
    return driver
