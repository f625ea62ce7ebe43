"""The access audit: who saw or changed which patient's records, kept append-only in PostgreSQL.

One row per request to a guarded route (and per command-line change to keys): when, who (the key
or account's id, name and role), the action (the route's operation id), the resource, the patients
concerned, the request id and the outcome.

- A write is recorded in the transaction that makes it: a session hook adds the row just before
  each commit made while a request is being served, so the change and its record commit or roll
  back together.
- A read is recorded before the response leaves: the middleware holds the response's first bytes
  until the row is committed, so a response that fails later is still on record, and a record that
  cannot be written means no patient data is sent.
- Patients concerned are gathered from the records the request loaded or wrote (any row with a
  `patient_id`, a patient row itself, a referral's patient snapshot) and from `patient_id` fields
  and `Patient/<id>` references in the response.
- Administrative tables (keys, webhook endpoints) record each change's before and after values,
  secrets and digests left out. A soft delete (a row's `deleted_at` set) is recorded as a delete
  with the whole row before and after.

The table refuses UPDATE, DELETE and TRUNCATE in a trigger. Only the retention purge deletes: it
sets `clinic.audit_purge_before` for its own transaction, and the trigger lets it delete rows
older than that moment only.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import getpass
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import structlog
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send
from sqlalchemy import (
    DateTime,
    Index,
    SmallInteger,
    String,
    Table,
    Uuid,
    event,
    func,
    insert,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column
from sqlalchemy.sql.dml import ValuesBase
from sqlalchemy.sql.elements import BindParameter

from services.common.db.engine import AccessBase

log = structlog.get_logger(__name__)

#: Tables whose changes are recorded with before and after values (administrative changes).
ADMIN_TABLES = frozenset({"api_keys", "webhook_endpoints"})
#: Columns never copied into the audit (secrets, key digests).
_SECRET_COLUMN = re.compile(r"secret|hash|password|token", re.I)
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([0-9a-fA-F-]{36})$")
#: Health, schema and metrics: no patient data, no key (the auth middleware skips them too).
PUBLIC = re.compile(r"^/(health/|schema|metrics)")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuditEvent(AccessBase):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at_id", "at", "id"),
        Index("ix_audit_events_patient_ids", "patient_ids", postgresql_using="gin"),
        Index("ix_audit_events_actor_name", "actor_name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, server_default=text("gen_random_uuid()"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    service: Mapped[str] = mapped_column(String(20))
    #: The key's (or staff account's) id; null for an unauthenticated caller or the command line.
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    actor_name: Mapped[str] = mapped_column(String(100))
    actor_role: Mapped[str | None] = mapped_column(String(20))
    #: `key`, `account`, `cli` or `anonymous`.
    actor_kind: Mapped[str] = mapped_column(String(12))
    action: Mapped[str] = mapped_column(String(80))
    method: Mapped[str | None] = mapped_column(String(10))
    path: Mapped[str | None] = mapped_column(String(300))
    resource_type: Mapped[str | None] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(200))
    patient_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), server_default=text("'{}'"))
    request_id: Mapped[str | None] = mapped_column(String(64))
    #: `ok` (read answered or write committed), `denied` (401/403), `rejected` (another 4xx),
    #: `failed` (5xx).
    outcome: Mapped[str] = mapped_column(String(12))
    status: Mapped[int | None] = mapped_column(SmallInteger)
    #: Administrative changes: `[{"table", "id", "before", "after"}]`, secrets left out.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


#: One audit row (the parameters: `AccessContext.row`); a Core statement compiled once, not an
#: ORM insert built and compiled per request.
_INSERT_ROW = insert(cast(Table, AuditEvent.__table__))


@dataclass(frozen=True, slots=True)
class Actor:
    id: uuid.UUID | None
    name: str
    role: str | None
    kind: str


@dataclass
class AccessContext:
    """What the audit knows of the request (or command) being served."""

    service: str
    action: str
    method: str | None = None
    path: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    request_id: str | None = None
    scope: Scope | None = None
    fixed_actor: Actor | None = None
    patients: set[uuid.UUID] = field(default_factory=set)
    changes: list[dict[str, Any]] = field(default_factory=list)
    recorded: bool = False

    def actor(self) -> Actor | None:
        if self.fixed_actor is not None:
            return self.fixed_actor
        user = None if self.scope is None else self.scope.get("user")
        return actor_of(user)

    def row(self, actor: Actor, outcome: str, status: int | None) -> dict[str, Any]:
        return {
            "service": self.service,
            "actor_id": actor.id,
            "actor_name": actor.name[:100],
            "actor_role": actor.role,
            "actor_kind": actor.kind,
            "action": self.action[:80],
            "method": self.method,
            "path": None if self.path is None else self.path[:300],
            "resource_type": self.resource_type,
            "resource_id": None if self.resource_id is None else self.resource_id[:200],
            "patient_ids": sorted(self.patients),
            "request_id": self.request_id,
            "outcome": outcome,
            "status": status,
            "detail": {"changes": self.changes} if self.changes else None,
        }


_current: contextvars.ContextVar[AccessContext | None] = contextvars.ContextVar("clinic_audit", default=None)


def audit_service() -> str:
    """The service serving the current request (`cli` outside one)."""
    ctx = _current.get()
    return ctx.service if ctx is not None else "cli"


ANONYMOUS = Actor(id=None, name="anonymous", role=None, kind="anonymous")


def actor_of(user: Any) -> Actor | None:
    """The audit's view of an authenticated user (a key's principal or a staff account)."""
    if user is None:
        return None
    role = getattr(user, "role", None)
    account_id = getattr(user, "user_id", None)  # a signed-in staff member (the pages)
    return Actor(
        id=getattr(user, "key_id", None) or account_id or getattr(user, "id", None),
        name=str(getattr(user, "name", "unknown")),
        role=None if role is None else str(role),
        kind=str(getattr(user, "kind", "account" if account_id is not None else "key")),
    )


@contextmanager
def acting_as(
    service: str,
    action: str,
    *,
    resource: tuple[str, str] | None = None,
    actor: Actor | None = None,
) -> Iterator[AccessContext]:
    """Record the commits made inside as `actor` (default: the operating-system user at the
    command line) doing `action` to `resource` (its type and id)."""
    who = actor or Actor(id=None, name=f"cli:{getpass.getuser()}", role="admin", kind="cli")
    kind, ident = resource or (None, None)
    ctx = AccessContext(
        service=service, action=action, fixed_actor=who, resource_type=kind, resource_id=ident
    )
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


# --- gathering patients and changes from the ORM ---------------------------------------------


def _patients_of(obj: Any) -> Iterator[uuid.UUID]:
    table = getattr(obj, "__tablename__", "")
    if table == "patients" and isinstance(getattr(obj, "id", None), uuid.UUID):
        yield obj.id
    patient_id = getattr(obj, "patient_id", None)
    if isinstance(patient_id, uuid.UUID):
        yield patient_id
    snapshot = getattr(obj, "patient", None)
    if isinstance(snapshot, Mapping):
        found = _as_uuid(snapshot.get("patient_id"))
        if found is not None:
            yield found


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return None


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value, builtin_types=(), str_keys=True) if value is not None else None


def _soft_deleted(state: Any) -> bool:
    """Whether this change sets the row's `deleted_at` (a soft delete)."""
    if "deleted_at" not in state.mapper.column_attrs:
        return False
    history = state.attrs["deleted_at"].history
    return bool(history.added) and history.added[0] is not None and not any(history.deleted)


def _change_of(obj: Any, kind: str) -> dict[str, Any]:
    state = sa_inspect(obj)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    whole = kind == "update" and _soft_deleted(state)
    if whole:  # a soft delete is recorded as a delete: the whole row before and after
        kind = "delete"
    for attr in state.mapper.column_attrs:
        key = attr.key
        if _SECRET_COLUMN.search(key):
            continue
        history = state.attrs[key].history
        if whole:
            before[key] = _plain(history.deleted[0] if history.deleted else getattr(obj, key))
            after[key] = _plain(getattr(obj, key))
        elif kind == "insert":
            after[key] = _plain(getattr(obj, key))
        elif kind == "delete":
            before[key] = _plain(
                history.unchanged[0] if history.unchanged else (history.deleted or [None])[0]
            )
        elif history.has_changes():
            before[key] = _plain(history.deleted[0] if history.deleted else None)
            after[key] = _plain(history.added[0] if history.added else None)
    ident = state.identity or sa_inspect(type(obj)).primary_key_from_instance(obj)  # type: ignore[union-attr]
    return {
        "table": obj.__tablename__,
        "id": None if not ident or ident[0] is None else str(ident[0]),
        "action": kind,
        "before": before or None,
        "after": after or None,
    }


@event.listens_for(Session, "loaded_as_persistent")
def _on_load(_session: Session, instance: Any) -> None:
    ctx = _current.get()
    if ctx is not None:
        ctx.patients.update(_patients_of(instance))


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    # Writes sent as statements rather than objects: their `patient_id` parameters (and a new
    # patient row's id) name the patients concerned.
    ctx = _current.get()
    if ctx is None or state.is_select:
        return
    params = state.parameters
    rows = params if isinstance(params, list) else [params or {}]
    statement = state.statement
    if (state.is_insert or state.is_update) and isinstance(statement, ValuesBase):
        table = getattr(getattr(statement, "table", None), "name", None)
        if table == AuditEvent.__tablename__:
            return  # the audit's own row
        rows = [*rows, *_values_of(statement)]
        if table == "patients":
            ctx.patients.update(
                f for row in rows if isinstance(row, Mapping) and (f := _as_uuid(row.get("id"))) is not None
            )
    for row in rows:
        if isinstance(row, Mapping) and (found := _as_uuid(row.get("patient_id"))) is not None:
            ctx.patients.add(found)


def _values_of(statement: ValuesBase) -> list[dict[str, Any]]:
    """The values an INSERT or UPDATE statement carries, by column key, read from the statement
    itself: compiling it for its parameters (uncached) cost more than the statement's execution."""
    given: list[Any] = [statement._values] if statement._values else []
    for many in statement._multi_values:
        given.extend(many)
    rows: list[dict[str, Any]] = []
    for values in given:
        if not isinstance(values, Mapping):
            continue  # positional rows name no column
        row: dict[str, Any] = {}
        for key, value in values.items():
            name = key if isinstance(key, str) else getattr(key, "key", None)
            if isinstance(name, str):
                row[name] = value.effective_value if isinstance(value, BindParameter) else value
        rows.append(row)
    return rows


@event.listens_for(Session, "before_flush")
def _on_before_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    # Changed and deleted rows: their old values are known only before the flush.
    ctx = _current.get()
    if ctx is None:
        return
    for kind, objects in (("update", session.dirty), ("delete", session.deleted)):
        for obj in objects:
            ctx.patients.update(_patients_of(obj))
            if getattr(obj, "__tablename__", None) in ADMIN_TABLES and (
                kind == "delete" or session.is_modified(obj)
            ):
                ctx.changes.append(_change_of(obj, kind))


@event.listens_for(Session, "after_flush")
def _on_after_flush(session: Session, _flush_context: Any) -> None:
    # New rows: their ids (defaults, identity columns) are known only after the flush.
    ctx = _current.get()
    if ctx is None:
        return
    for obj in session.new:
        ctx.patients.update(_patients_of(obj))
        if getattr(obj, "__tablename__", None) in ADMIN_TABLES:
            ctx.changes.append(_change_of(obj, "insert"))


@event.listens_for(Session, "before_commit")
def _on_before_commit(session: Session) -> None:
    ctx = _current.get()
    if ctx is None or ctx.method in _SAFE_METHODS:
        return
    actor = ctx.actor()
    if actor is None:
        return
    session.flush()
    session.execute(_INSERT_ROW, ctx.row(actor, "ok", None))
    session.info["audit_pending"] = True


@event.listens_for(Session, "after_commit")
def _on_after_commit(session: Session) -> None:
    ctx = _current.get()
    if ctx is not None and session.info.pop("audit_pending", False):
        ctx.recorded = True
        ctx.patients.clear()
        ctx.changes.clear()


@event.listens_for(Session, "after_rollback")
def _on_after_rollback(session: Session) -> None:
    session.info.pop("audit_pending", None)


# --- the middleware: reads, refusals and failed writes ----------------------------------------


def _outcome(status: int) -> str:
    if status in (401, 403):
        return "denied"
    if status >= 500:
        return "failed"
    if status >= 400:
        return "rejected"
    return "ok"


def _patients_in(value: Any, found: set[uuid.UUID], depth: int = 0) -> None:
    if depth > 12:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "patient_id":
                if (as_id := _as_uuid(item)) is not None:
                    found.add(as_id)
            else:
                _patients_in(item, found, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _patients_in(item, found, depth + 1)
    elif (
        isinstance(value, str)
        and "Patient/" in value
        and (match := _PATIENT_REF.search(value))
        and (as_id := _as_uuid(match.group(1))) is not None
    ):
        found.add(as_id)


def _context_for(scope: Scope, service: str) -> AccessContext:
    handler = scope.get("route_handler")
    operation = getattr(handler, "operation_id", None)
    tags = getattr(handler, "tags", None) or []
    params = scope.get("path_params") or {}
    path_template = getattr(handler, "paths", None)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return AccessContext(
        service=service,
        action=operation if isinstance(operation, str) else f"{scope.get('method')} {scope.get('path')}",
        method=str(scope.get("method")),
        path=next(iter(path_template)) if path_template and len(path_template) == 1 else scope.get("path"),
        resource_type=tags[0] if tags else None,
        resource_id="/".join(str(v) for v in params.values()) or None,
        request_id=request_id if isinstance(request_id, str) else None,
        scope=scope,
    )


async def write_row(engine: AsyncEngine, values: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(_INSERT_ROW, values)


class AuditMiddleware:
    """Sets the audit context for the request; records reads, refusals and failed writes before
    the response leaves (a committed write has already recorded itself)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or PUBLIC.match(scope.get("path", "")):  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        ctx = _context_for(scope, state["clinic_service"])
        token = _current.set(ctx)
        start: HTTPResponseStartEvent | None = None
        chunks: list[bytes] = []

        async def audited_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message  # type: ignore[assignment]
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            await self._record(state["clinic_engine"], ctx, start["status"], body)
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        try:
            await self.app(scope, receive, audited_send)
        except HTTPException as exc:
            # The auth middleware's refusals are raised past us and answered further out.
            if start is None:
                await self._record(state["clinic_engine"], ctx, exc.status_code, b"")
            raise
        finally:
            _current.reset(token)

    @staticmethod
    async def _record(engine: AsyncEngine, ctx: AccessContext, status: int, body: bytes) -> None:
        if ctx.recorded and status < 400:
            return
        actor = ctx.actor()
        if actor is None:
            if status not in (401, 403):
                return
            actor = ANONYMOUS
        if status < 400 and body[:1] in (b"{", b"["):
            with suppress(msgspec.DecodeError):
                _patients_in(msgspec.json.decode(body), ctx.patients)
        ctx.changes.clear()  # a refused or failed write changed nothing
        if status >= 400 and ctx.recorded:
            return
        await write_row(engine, ctx.row(actor, _outcome(status), status))


# --- retention -----------------------------------------------------------------------------


async def purge_older_than(engine: AsyncEngine, cutoff: dt.datetime) -> int:
    """Delete audit rows older than `cutoff` (the only deletion the table's trigger allows)."""
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('clinic.audit_purge_before', :cutoff, true)"),
            {"cutoff": cutoff.isoformat()},
        )
        result = await conn.execute(
            text("DELETE FROM access.audit_events WHERE at < :cutoff"), {"cutoff": cutoff}
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def run_audit_retention(engine: AsyncEngine, retention_days: int, stop: asyncio.Event) -> None:
    """Purge rows past the retention period now and then, until stopped."""
    while not stop.is_set():
        try:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=retention_days)
            removed = await purge_older_than(engine, cutoff)
            if removed:
                log.info("audit_purged", removed=removed)
        except Exception as exc:  # the next round tries again
            log.warning("audit_purge_failed", error=type(exc).__name__)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=3600)
