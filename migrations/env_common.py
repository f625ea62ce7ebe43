"""Shared Alembic environment: every history runs on a connection handed in by
`services.common.db.migrate`, with its version table in its own schema and the models of that
schema as its target (so `alembic check` and the suite can compare the two)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from services.common.db.migrate import comparison_options


def run(schema: str) -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `clinic migrate`, which supplies the connection")
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(connection=connection, transaction_per_migration=False, **comparison_options(schema))
    with context.begin_transaction():
        context.run_migrations()
