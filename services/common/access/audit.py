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

This module holds the request's (or command's) audit context and the session hooks that record
writes; `audit_middleware` records reads, refusals and failed writes; `audit_retention` purges old
rows; the table is `models.AuditEvent`.

The table refuses UPDATE, DELETE and TRUNCATE in a trigger. Only the retention purge deletes: it
sets `clinic.audit_purge_before` for its own transaction, and the trigger lets it delete rows
older than that moment only.
"""

from __future__ import annotations

import contextvars
import getpass
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar.types import Scope
from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.dml import ValuesBase
from sqlalchemy.sql.elements import BindParameter

from services.common.access.models import AuditEvent
from services.common.db.driver import Driver, Statement, driver_of, execute_from_hook

#: Tables whose changes are recorded with before and after values (administrative changes).
ADMIN_TABLES = frozenset({"api_keys", "webhook_endpoints"})
#: Columns never copied into the audit (secrets, key digests).
_SECRET_COLUMN = re.compile(r"secret|hash|password|token", re.I)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


#: One audit row (the parameters: `AccessContext.row`; `id` and `at` are the server's defaults),
#: sent on the driver's connection: every guarded request writes one, and SQLAlchemy's
#: per-statement work cost more than the INSERT itself.
_INSERT_ROW = Statement(
    """
    INSERT INTO access.audit_events (service, actor_id, actor_name, actor_role, actor_kind, action, method,
                                     path, resource_type, resource_id, patient_ids, request_id, outcome,
                                     status, detail)
    VALUES (:service, :actor_id, :actor_name, :actor_role, :actor_kind, :action, :method, :path,
            :resource_type, :resource_id, :patient_ids, :request_id, :outcome, :status, :detail)
    """
)


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
            "detail": msgspec.json.encode({"changes": self.changes}).decode() if self.changes else None,
        }


#: The audit context of the request or command being served (None: nothing is being audited).
current_context: contextvars.ContextVar[AccessContext | None] = contextvars.ContextVar(
    "clinic_audit", default=None
)


def concerns(*patient_ids: uuid.UUID) -> None:
    """The request (or command) being audited concerns these patients (for rows written on the
    driver's connection, which the session hooks do not see)."""
    ctx = current_context.get()
    if ctx is not None:
        ctx.patients.update(patient_ids)


def audit_service() -> str:
    """The service serving the current request (`cli` outside one)."""
    ctx = current_context.get()
    return ctx.service if ctx is not None else "cli"


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
    token = current_context.set(ctx)
    try:
        yield ctx
    finally:
        current_context.reset(token)


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
        found = as_uuid(snapshot.get("patient_id"))
        if found is not None:
            yield found


def as_uuid(value: Any) -> uuid.UUID | None:
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
    ctx = current_context.get()
    if ctx is not None:
        ctx.patients.update(_patients_of(instance))


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    # Writes sent as statements rather than objects: their `patient_id` parameters (and a new
    # patient row's id) name the patients concerned.
    ctx = current_context.get()
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
                f for row in rows if isinstance(row, Mapping) and (f := as_uuid(row.get("id"))) is not None
            )
    for row in rows:
        if isinstance(row, Mapping) and (found := as_uuid(row.get("patient_id"))) is not None:
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
    ctx = current_context.get()
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
    ctx = current_context.get()
    if ctx is None:
        return
    for obj in session.new:
        ctx.patients.update(_patients_of(obj))
        if getattr(obj, "__tablename__", None) in ADMIN_TABLES:
            ctx.changes.append(_change_of(obj, "insert"))


def _writer() -> tuple[AccessContext, Actor] | None:
    """The context and actor of a request (or command) whose commits are recorded."""
    ctx = current_context.get()
    if ctx is None or ctx.method in _SAFE_METHODS:
        return None
    actor = ctx.actor()
    return None if actor is None else (ctx, actor)


def _committed(ctx: AccessContext) -> None:
    ctx.recorded = True
    ctx.patients.clear()
    ctx.changes.clear()


@event.listens_for(Session, "before_commit")
def _on_before_commit(session: Session) -> None:
    if (writer := _writer()) is None:
        return
    ctx, actor = writer
    session.flush()
    execute_from_hook(session.connection(), _INSERT_ROW, ctx.row(actor, "ok", None))
    session.info["audit_pending"] = True


@event.listens_for(Session, "after_commit")
def _on_after_commit(session: Session) -> None:
    ctx = current_context.get()
    if ctx is not None and session.info.pop("audit_pending", False):
        _committed(ctx)


async def record_write(driver: Driver) -> Callable[[], None]:
    """Record the request's write on `driver`, in the transaction that makes it (as the session
    hook does at a session's commit); call what it returns once that transaction has committed."""
    if (writer := _writer()) is None:
        return lambda: None
    ctx, actor = writer
    await driver.execute(_INSERT_ROW, ctx.row(actor, "ok", None))
    return lambda: _committed(ctx)


@event.listens_for(Session, "after_rollback")
def _on_after_rollback(session: Session) -> None:
    session.info.pop("audit_pending", None)


async def write_row(engine: AsyncEngine, values: dict[str, Any]) -> None:
    """One audit row, in its own transaction (a read, a refusal, a failed write)."""
    async with engine.begin() as conn:
        driver = await driver_of(conn)
        await driver.execute(_INSERT_ROW, values)
