"""Database URLs and engines, shared by both services, the workers and the CLI."""

from __future__ import annotations

from typing import Any

from litestar.types import Scope
from sqlalchemy import MetaData
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool

from services.common.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: Where the SQLAlchemy plugin keeps a request's session in its scope (advanced-alchemy's
#: namespace; its helpers for it are private).
_PLUGIN_STATE = "_aa_connection_state"


def schema_metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


class AccessBase(DeclarativeBase):
    """Tables of the `access` schema (API keys), shared by both services' guards."""

    metadata = schema_metadata("access")


def asyncpg_url(url: str) -> str:
    """Accept `postgresql://`, `postgres://` or `postgresql+asyncpg://`; return the asyncpg form."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The plain `postgresql://` form, as asyncpg.connect and psql expect it."""
    parsed = make_url(asyncpg_url(url))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def resolve_database_url(settings: Settings) -> str:
    """The configured database, else the embedded server in the data directory."""
    if settings.database_url:
        return asyncpg_url(settings.database_url)
    from services.common.db.embedded import start_embedded

    return asyncpg_url(start_embedded(settings.data_dir))


#: Pooled connections are replaced after this long instead of being pinged at every checkout (a
#: ping is a round trip per request). A connection the server dropped meanwhile fails its
#: statement once; the pool then discards every connection older than the failure
#: (SQLAlchemy's invalidation), so one request sees the error, not every one after it.
POOL_RECYCLE_SECONDS = 1800


def create_engine(url: str, settings: Settings | None = None, *, null_pool: bool = False) -> AsyncEngine:
    # hide_parameters: a failed statement must never print patient data into a log line.
    kwargs: dict[str, Any] = {"pool_recycle": POOL_RECYCLE_SECONDS, "hide_parameters": True}
    if null_pool:
        kwargs = {"poolclass": NullPool, "hide_parameters": True}
    elif settings is not None:
        kwargs.update(pool_size=settings.pool_size, max_overflow=settings.pool_overflow)
        # A statement stuck behind a lock (or a slow server) gives up after this, so a request
        # answers with a 503 problem instead of hanging. Migrations and the CLI (null pool, no
        # settings) are not limited.
        if settings.db_statement_timeout_seconds > 0:
            timeout_ms = str(round(settings.db_statement_timeout_seconds * 1000))
            kwargs["connect_args"] = {"server_settings": {"statement_timeout": timeout_ms}}
    return create_async_engine(asyncpg_url(url), **kwargs)


async def release_request_session(scope: Scope, scope_key: str) -> None:
    """Give the connection of the request's session (the SQLAlchemy plugin's `db_session`) back
    to the pool now. The plugin closes the session only as the response starts, outside every
    middleware; a middleware that writes after the handler (the access audit) would otherwise
    need a second connection while the first is held, and under as many concurrent requests as
    the pool holds, every request would wait on another's (measured: 32 concurrent reads of
    `/v1/intakes` answered 5 requests a second, 64 none, until the pool timed out). Closing twice
    is harmless: the plugin's own close then finds nothing to do. `scope_key` is the plugin
    config's `session_scope_key` (each config in a process gets its own)."""
    session = scope.get(_PLUGIN_STATE, {}).get(scope_key)  # type: ignore[attr-defined]
    if isinstance(session, AsyncSession):
        await session.close()
