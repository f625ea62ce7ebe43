"""Columns and operations the revisions share.

A revision, once applied somewhere, must go on emitting exactly the DDL it did: so nothing here
ever changes. A revision that needs something else spells it out itself (or adds a new helper).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


def uuid_id() -> sa.Column:
    """The `id` primary key the application fills in."""
    return sa.Column("id", sa.Uuid(), primary_key=True)


def identity_id(type_: type[sa.Integer] = sa.BigInteger) -> sa.Column:
    """The `id` primary key the database numbers (an identity column)."""
    return sa.Column("id", type_(), sa.Identity(), primary_key=True)


def timestamp(name: str, *, nullable: bool = False, default_now: bool = False) -> sa.Column:
    """A `timestamptz` column; `default_now`: the database fills it in."""
    default = sa.func.now() if default_now else None
    return sa.Column(name, sa.DateTime(timezone=True), server_default=default, nullable=nullable)


def parent_id(name: str, parent: str) -> sa.Column:
    """A row's parent (`schema.table`, by its uuid `id`): required, and the row goes with it."""
    return sa.Column(name, sa.Uuid(), sa.ForeignKey(f"{parent}.id", ondelete="CASCADE"), nullable=False)


def role_and_destination(table: str) -> tuple[sa.Column | sa.CheckConstraint, ...]:
    """A staff role (as `access_0001` knew them) and a destination, a specialist's only: the two
    columns and their checks."""
    return (
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("destination", sa.String(40), nullable=True),
        sa.CheckConstraint(
            "role IN ('front_desk', 'specialist', 'clinician', 'admin')", name=f"ck_{table}_role"
        ),
        sa.CheckConstraint(
            "(role = 'specialist') = (destination IS NOT NULL)", name=f"ck_{table}_destination"
        ),
    )


def add_actor_ids(schema: str, columns: Sequence[tuple[str, str]]) -> None:
    """Each (table, column): a nullable actor id (a key's or staff account's) beside the name."""
    for table, column in columns:
        op.add_column(table, sa.Column(column, sa.Uuid(), nullable=True), schema=schema)


def drop_actor_ids(schema: str, columns: Sequence[tuple[str, str]]) -> None:
    """Undo `add_actor_ids`, last column first."""
    for table, column in reversed(columns):
        op.drop_column(table, column, schema=schema)
