"""The queue's tables as SQLAlchemy Core declares them (schema `queue`, migrations `queue_000n`).

The queue itself speaks SQL (`queue.py`); these declarations are what `clinic migrate`'s history
is compared with, so the migrations and the description of the tables cannot drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from services.common.db.engine import schema_metadata

metadata = schema_metadata("queue")


def _at(name: str) -> Column[object]:
    """A timestamp the database fills in."""
    return Column(name, DateTime(timezone=True), server_default=func.now(), nullable=False)


events = Table(
    "events",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("type", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("subject", Uuid, nullable=False, index=True),
    Column("payload", JSONB, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("event_key", Text),
    _at("recorded_at"),
    Index("ix_events_recorded_at", "recorded_at"),
)

event_keys = Table(
    "event_keys",
    metadata,
    Column("event_key", Text, primary_key=True),
    Column("event_id", Uuid, nullable=False),
    _at("created_at"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("consumer", Text, primary_key=True),
    Column("event_type", Text, primary_key=True),
    _at("created_at"),
    Column("wanted", Boolean, nullable=False, server_default=text("true")),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", Uuid, ForeignKey("queue.events.id", ondelete="CASCADE"), nullable=False),
    Column("consumer", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    _at("available_at"),
    _at("created_at"),
    _at("updated_at"),
    Column("last_error", Text),
    CheckConstraint("status IN ('pending', 'dead')", name="status"),
    UniqueConstraint("event_id", "consumer", name="uq_deliveries_event_consumer"),
    Index("ix_deliveries_ready", "consumer", "id", postgresql_where=text("status = 'pending'")),
    Index("ix_deliveries_dead", "consumer", "id", postgresql_where=text("status = 'dead'")),
)

inbox = Table(
    "inbox",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("consumer", Text, primary_key=True),
    _at("applied_at"),
)

# A batch in flight: its deliveries, moved out of `deliveries` by the claim (column by column, in
# the same order), until the batch is handled or the claim lapses and puts them back.
claims = Table(
    "claims",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("consumer", Text, nullable=False),
    Column("lapses_at", DateTime(timezone=True), nullable=False),
    Column("deliveries", ARRAY(BigInteger), nullable=False),
    Column("event_ids", ARRAY(Uuid), nullable=False),
    Column("attempts", ARRAY(Integer), nullable=False),
    Column("created_ats", ARRAY(DateTime(timezone=True)), nullable=False),
    Column("last_errors", ARRAY(Text), nullable=False),
    _at("created_at"),
)
