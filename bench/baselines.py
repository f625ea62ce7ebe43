"""The bare baselines the intake benchmark runs beside the service, each as one uvicorn process:

    uvicorn bench.baselines:b0        # B0: decode, insert one JSONB row and one event row
    uvicorn bench.baselines:b0_same   # B0-same: the SQL statements one intake executes

Both decode the request body with msgspec (B0-same into the clinic's own `IntakeBody`, strictly,
as the service does) and write in one transaction on an asyncpg pool (`BENCH_DSN`). Neither checks
an API key nor logs: that is the service's own cost.

B0-same executes, on the clinic's tables, the statements of one intake with no idempotency key
(BEGIN, patient, intake and version, event with its key and deliveries and NOTIFY, COMMIT), so
the gap between it and the service is what Litestar's plugins, SQLAlchemy, auth and the
handler's Python cost. Keep it in step with services/intake/intakes/submissions.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar, Request, Response, get, post

from services.common.contracts.events import CONSUMERS, IntakeSubmitted
from services.common.contracts.intake_body import IntakeBody

B0_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_b0_docs (
    id uuid PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS bench_b0_events (id bigserial PRIMARY KEY, type text NOT NULL,
    subject uuid NOT NULL, payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
"""


@asynccontextmanager
async def _pool(app: Litestar) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=2, max_size=10)
    app.state["pool"] = pool
    try:
        yield
    finally:
        await pool.close()


@get("/health", sync_to_thread=False)
def health() -> str:
    return "ok"


# -- B0 ------------------------------------------------------------------------------------------


@post("/v1/intakes")
async def b0_intake(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = msgspec.json.decode(await request.body())
    doc_id = uuid.uuid4()
    raw = msgspec.json.encode(body).decode()
    async with request.app.state["pool"].acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO bench_b0_docs VALUES ($1, $2::jsonb, now())", doc_id, raw)
        await conn.execute(
            "INSERT INTO bench_b0_events (type, subject, payload) VALUES ('intake.submitted', $1, $2::jsonb)",
            doc_id,
            raw,
        )
    return Response(
        msgspec.json.encode({"id": doc_id, **body}), status_code=201, media_type="application/json"
    )


b0 = Litestar([health, b0_intake], lifespan=[_pool], logging_config=None)


# -- B0-same -------------------------------------------------------------------------------------

_PATIENT = (
    "INSERT INTO intake.patients (id, mrn, given_name, family_name, birth_date, sex, phone, email, "
    "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) "
    "ON CONFLICT (mrn) DO NOTHING RETURNING id"
)
_INTAKE = (
    "WITH i AS (INSERT INTO intake.intakes (id, patient_id, version, status, source, submitted_at, "
    "submitted_by, updated_at) VALUES ($1, $2, 1, 'submitted', 'api', $3, $4, $3)) "
    "INSERT INTO intake.intake_versions (intake_id, version, patient_id, submitted_at, submitted_by, body) "
    "VALUES ($1, 1, $2, $3, $4, $5::jsonb)"
)
_PUBLISH = """
WITH key AS (
    INSERT INTO queue.event_keys (event_key, event_id) VALUES ($7, $1)
    ON CONFLICT (event_key) DO NOTHING RETURNING event_id
), ev AS (
    INSERT INTO queue.events (id, type, version, subject, payload, occurred_at, event_key)
    SELECT $1, $2, $3, $4, $5::jsonb, $6, $7 WHERE EXISTS (SELECT 1 FROM key)
    RETURNING id, type
), fan AS (
    INSERT INTO queue.deliveries (event_id, consumer)
    SELECT ev.id, s.consumer FROM ev JOIN queue.subscriptions s ON s.event_type = ev.type AND s.wanted
    RETURNING consumer
)
SELECT count(pg_notify('clinic_queue.' || consumer, '')) FROM fan
"""
_INTAKE_BODY = msgspec.json.Decoder(IntakeBody)


@post("/v1/intakes")
async def b0_same_intake(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = _INTAKE_BODY.decode(await request.body())
    p = body.patient
    now = datetime.now(UTC)
    intake_id, patient_id = uuid.uuid4(), uuid.uuid4()
    form = msgspec.json.encode(body).decode()
    event = IntakeSubmitted(
        intake_id=intake_id,
        patient_id=patient_id,
        intake_version=1,
        submitted_at=now,
        intake=body,
    )
    async with request.app.state["pool"].acquire() as conn, conn.transaction():
        await conn.fetchval(
            _PATIENT,
            patient_id,
            p.mrn,
            p.given_name,
            p.family_name,
            p.birth_date,
            p.sex.value,
            p.phone,
            p.email,
            now,
        )
        await conn.execute(_INTAKE, intake_id, patient_id, now, "bench", form)
        await conn.fetchval(
            _PUBLISH,
            uuid.uuid4(),
            IntakeSubmitted.TYPE,
            IntakeSubmitted.VERSION,
            intake_id,
            msgspec.json.encode(event).decode(),
            now,
            f"{IntakeSubmitted.TYPE}:{intake_id}:1",
        )
    out = {
        "id": intake_id,
        "patient_id": patient_id,
        "status": "submitted",
        "version": 1,
        "submitted_at": now,
    }
    return Response(
        msgspec.json.encode({**msgspec.structs.asdict(body), **out}),
        status_code=201,
        media_type="application/json",
    )


b0_same = Litestar([health, b0_same_intake], lifespan=[_pool], logging_config=None)

#: The consumers the bench expects subscribed to `intake.submitted` (for the printed summary).
INTAKE_SUBSCRIBERS = sorted(c for c, types in CONSUMERS.items() if IntakeSubmitted.TYPE in types)
