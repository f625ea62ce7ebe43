"""Shared Alembic environment: every history runs on a connection handed in by
`services.common.migrate`, with its version table in its own schema."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text


def run(schema: str) -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `clinic migrate`, which supplies the connection")
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        target_metadata=None,
        version_table_schema=schema,
        include_schemas=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()
