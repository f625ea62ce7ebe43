"""The bare baselines the intake benchmark runs beside the service, each as one uvicorn process:

    uvicorn bench.baselines:b0        # B0: decode, insert one JSONB row and one event row
    uvicorn bench.baselines:b0_same   # B0-same: the SQL statements one intake executes

Both decode the request body with msgspec (B0-same into the clinic's own `IntakeBody`, strictly,
as the service does) and write in one transaction on an asyncpg pool (`BENCH_DSN`). Neither checks
an API key nor logs: that is the service's own cost.

B0-same executes, on the clinic's tables, the very statements of one intake with no idempotency
key, imported from the service's modules (BEGIN; patient, intake and version in one; event with
its key, deliveries and NOTIFY; the access audit's row; COMMIT), so the gap between it and the
service is what Litestar's middleware and plugins, SQLAlchemy's session, auth and the handler's
Python cost.
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

from services.common.access.audit import _INSERT_ROW as _AUDIT_ROW
from services.common.contracts.events import CONSUMERS, IntakeSubmitted
from services.common.contracts.intake_body import IntakeBody
from services.common.queue.publish import _PUBLISH, _publish_values
from services.intake.intakes.submissions import _NEW_PATIENT_AND_INTAKE

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
    by = "bench"
    written = {
        "id": intake_id,
        "patient_id": patient_id,
        "status": "submitted",
        "source": "api",
        "at": now,
        "by": by,
        "by_id": None,
        "body": form,
        **msgspec.structs.asdict(p),
        "sex": p.sex.value,
    }
    event_key = f"{IntakeSubmitted.TYPE}:{intake_id}:1"
    audit = {
        "service": "intake",
        "actor_id": None,
        "actor_name": by,
        "actor_role": "front_desk",
        "actor_kind": "key",
        "action": "submitIntake",
        "method": "POST",
        "path": "/v1/intakes",
        "resource_type": "intakes",
        "resource_id": None,
        "patient_ids": [patient_id],
        "request_id": None,
        "outcome": "ok",
        "status": None,
        "detail": None,
    }
    async with request.app.state["pool"].acquire() as conn, conn.transaction():
        await conn.fetchval(_NEW_PATIENT_AND_INTAKE.text, *_NEW_PATIENT_AND_INTAKE.args(written))
        published = _publish_values(uuid.uuid4(), event, intake_id, event_key, now)
        await conn.fetchrow(_PUBLISH.text, *_PUBLISH.args(published))
        await conn.execute(_AUDIT_ROW.text, *_AUDIT_ROW.args(audit))
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
