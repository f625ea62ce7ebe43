"""The closed loop: the referral service's events keep each intake's `status` and `referral`
summary current.

Events may come late, out of order or twice. Each referral gets one row in `referral_mirror`,
and an event changes that row's status only if it is newer than what the row holds (by the time
the referral service gives it: `created_at`, `changed_at`). The intake's summary is then derived
from its referrals: the one not superseded (by `supersedes` on a newer referral or
`superseded_by` on the old one), the newest (by creation, or first news of it) if several. The
intake row is locked first, so two workers applying events of one intake never derive the
summary from each other's half-work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import ARRAY, Table, Uuid, bindparam, case, func, literal_column, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import Envelope, ReferralCreated, ReferralStatusChanged
from services.common.contracts.vocabulary import ConsumerName
from services.common.queue import Consumer
from services.intake.db.models import Intake, ReferralMirror
from services.intake.intakes.schemas import IntakeStatus

CONSUMER_NAME = ConsumerName.INTAKE_REFERRAL_MIRROR
log = structlog.get_logger(__name__)


def _mirror_row(payload: ReferralCreated | ReferralStatusChanged) -> dict[str, object]:
    row: dict[str, object] = {
        "referral_id": payload.referral_id,
        "intake_id": payload.intake_id,
        "destination": payload.destination,
        "priority": payload.priority,
        "status": payload.status,
    }
    if isinstance(payload, ReferralCreated):
        return row | {
            "status_at": payload.created_at,
            "created_at": payload.created_at,
            "intake_version": payload.intake_version,
            "supersedes": payload.supersedes,
            "due_by": payload.due_by,
            "reasons": payload.reasons or None,
        }
    return row | {
        "status_at": payload.changed_at,
        "superseded_by": payload.superseded_by,
        "due_by": payload.due_by,
    }


_MIRROR: Table = ReferralMirror.__table__  # type: ignore[assignment]
_ROW_KEYS = (
    "referral_id", "intake_id", "destination", "priority", "status", "status_at", "created_at",
    "intake_version", "supersedes", "superseded_by", "due_by", "reasons",
)  # fmt: skip


def _upsert() -> Any:
    """One referral's row, upserted: newer status wins; facts learnt once (creation, version,
    supersession) are kept once known. Built once, every value a bound parameter (executed with
    one row or with many: one statement execution per row, in order)."""
    stmt = pg_insert(_MIRROR).values({key: bindparam(key) for key in _ROW_KEYS})
    new, old = stmt.excluded, _MIRROR.c
    newer = new.status_at > old.status_at
    return stmt.on_conflict_do_update(
        index_elements=[old.referral_id],
        set_={
            "destination": case((newer, new.destination), else_=old.destination),
            "priority": case((newer, new.priority), else_=old.priority),
            "status": case((newer, new.status), else_=old.status),
            "status_at": func.greatest(old.status_at, new.status_at),
            "created_at": func.coalesce(old.created_at, new.created_at),
            "intake_version": func.coalesce(old.intake_version, new.intake_version),
            "supersedes": func.coalesce(old.supersedes, new.supersedes),
            "superseded_by": func.coalesce(new.superseded_by, old.superseded_by),
            "due_by": case(
                (newer & new.due_by.is_not(None), new.due_by), else_=func.coalesce(old.due_by, new.due_by)
            ),
            "reasons": func.coalesce(old.reasons, new.reasons),
        },
    )


_UPSERT = _upsert()


def _full(row: dict[str, object]) -> dict[str, object]:
    return {key: row.get(key) for key in _ROW_KEYS}


async def _record(session: AsyncSession, rows: Sequence[dict[str, object]]) -> None:
    """Upsert the rows in order, in one round trip (a pipelined executemany). A referral twice
    in `rows` goes in a later round, so each round's rows are distinct referrals whatever the
    driver does with them."""
    rounds: list[list[dict[str, object]]] = []
    seen: dict[object, int] = {}
    for row in rows:
        n = seen.get(row["referral_id"], 0)
        seen[row["referral_id"]] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(_full(row))
    conn = await session.connection()
    for params in rounds:
        await conn.execute(_UPSERT, params)


#: An intake's referrals (a handful at most): one index lookup, whatever the planner knows of
#: the table. Which one is current is decided here, not in SQL, so no plan can turn it into a
#: scan of every referral (a hashed subplan does, on a table without statistics).
INTAKE_REFERRALS = (
    select(ReferralMirror)
    .where(ReferralMirror.intake_id == bindparam("intake_id"))
    .execution_options(populate_existing=True)  # upserted in Core just before, maybe in this session
)


def _current(referrals: Sequence[Any]) -> Any:
    """The referral not superseded (by `superseded_by`, or by another's `supersedes`), a kept
    referral before a cancelled review, the newest if several."""
    replaced = {r.supersedes for r in referrals if r.supersedes is not None}

    def rank(r: Any) -> tuple[bool, bool, float]:
        superseded = r.superseded_by is not None or r.referral_id in replaced
        return superseded, r.status == "cancelled", -(r.created_at or r.status_at).timestamp()

    return min(referrals, key=rank)


def _batch_referrals() -> Any:
    """The referrals of several intakes (a batch's): one index lookup per intake (a lateral
    join: `intake_id = ANY(...)` is a scan of the whole table when it has no statistics)."""
    wanted = (
        func.unnest(bindparam("intake_ids", type_=ARRAY(Uuid())))
        .table_valued("id")
        .render_derived(name="wanted")
    )
    # OFFSET 0 keeps the planner from flattening the lateral subquery into a hash join.
    each = (
        select(_MIRROR).where(_MIRROR.c.intake_id == wanted.c.id).offset(literal_column("0")).lateral("each")
    )
    return select(each).select_from(wanted).join(each, true())


#: See `_batch_referrals`.
BATCH_REFERRALS = _batch_referrals()

_INTAKES: Table = Intake.__table__  # type: ignore[assignment]
_SUMMARY = (
    update(_INTAKES)
    .where(_INTAKES.c.id == bindparam("s_intake"))
    .values(
        status=IntakeStatus.ROUTED.value,
        referral_id=bindparam("s_referral"),
        referral_destination=bindparam("s_destination"),
        referral_priority=bindparam("s_priority"),
        referral_status=bindparam("s_status"),
        referral_intake_version=bindparam("s_version"),
    )
)

#: Lock a batch's intakes, in id order (as any two workers would), and say which exist.
_LOCK_INTAKES = (
    select(_INTAKES.c.id)
    .where(_INTAKES.c.id == func.any(bindparam("intake_ids", type_=ARRAY(Uuid()))))
    .order_by(_INTAKES.c.id)
    .with_for_update()
)


def _summary(intake_id: object, current: Any) -> dict[str, object]:
    return {
        "s_intake": intake_id,
        "s_referral": current.referral_id,
        "s_destination": current.destination,
        "s_priority": current.priority,
        "s_status": current.status,
        "s_version": current.intake_version,
    }


async def _refresh_summary(session: AsyncSession, intake_id: object) -> None:
    referrals = (await session.execute(INTAKE_REFERRALS, {"intake_id": intake_id})).scalars().all()
    conn = await session.connection()
    await conn.execute(_SUMMARY, _summary(intake_id, _current(referrals)))


async def _refresh_summaries(session: AsyncSession, intake_ids: Sequence[object]) -> None:
    """Each intake's summary from all its referrals: one read, one pipelined update."""
    conn = await session.connection()
    by_intake: dict[object, list[Any]] = {}
    for row in await conn.execute(BATCH_REFERRALS, {"intake_ids": list(intake_ids)}):
        by_intake.setdefault(row.intake_id, []).append(row)
    await conn.execute(_SUMMARY, [_summary(i, _current(by_intake[i])) for i in intake_ids])


async def apply_referral_event(session: AsyncSession, envelope: Envelope) -> None:
    """The consumer's handler: runs in the queue worker's transaction, which commits it together
    with the inbox row."""
    payload = envelope.payload()
    if not isinstance(payload, ReferralCreated | ReferralStatusChanged):
        return
    intake = (
        await session.execute(select(Intake.id).where(Intake.id == payload.intake_id).with_for_update())
    ).scalar_one_or_none()
    await _record(session, [_mirror_row(payload)])
    if intake is None:
        # Not ours (or not yet visible): the referral row is kept, and the summary is derived
        # when the next event of this intake arrives.
        log.warning("referral_event_for_unknown_intake", event_id=str(envelope.id))
        return
    await _refresh_summary(session, payload.intake_id)


async def apply_referral_events(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """The batch handler: the same end state as `apply_referral_event` applied to each envelope
    in turn, in four statements for the batch: lock the intakes, upsert the referral rows, read
    the intakes' referrals, write the summaries."""
    events = [
        (envelope, payload)
        for envelope in envelopes
        if isinstance(payload := envelope.payload(), ReferralCreated | ReferralStatusChanged)
    ]
    if not events:
        return
    wanted = list(dict.fromkeys(payload.intake_id for _, payload in events))
    conn = await session.connection()
    known = set((await conn.execute(_LOCK_INTAKES, {"intake_ids": wanted})).scalars())
    await _record(session, [_mirror_row(payload) for _, payload in events])
    for envelope, payload in events:
        if payload.intake_id not in known:
            log.warning("referral_event_for_unknown_intake", event_id=str(envelope.id))
    present = [intake_id for intake_id in wanted if intake_id in known]
    if present:
        await _refresh_summaries(session, present)


referral_mirror = Consumer(CONSUMER_NAME, apply_referral_event, apply_referral_events)
