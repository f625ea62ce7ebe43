"""The intake POST's fast lane (`services/intake/intakes/submit_lane.py`): a submission it answers
cannot be told from one the route answers (status, headers, body, event, audit row, log line,
metrics), whatever it does not take is answered by the route as before, and a failure inside it is
the same problem the route would give."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db.engine import create_engine, libpq_url
from services.common.http.fast_lane import Answer
from services.common.settings import Settings
from services.intake.app import create_app
from services.intake.intakes.submit_lane import SubmitIntakeLane
from tests.conftest import MakeKey, auth, query, serve
from tests.intake.conftest import events_for, intake_form
from tests.security.test_auth_failures import metric

#: Differ between any two submissions.
PER_SUBMISSION = {"id", "patient_id", "submitted_at"}
PER_RESPONSE_HEADERS = {"location", "x-request-id", "content-length"}


@pytest.fixture
def lane_answers(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per request the lane looked at: whether it answered it."""
    seen: list[bool] = []
    prepare = SubmitIntakeLane.prepare

    async def watched(self: SubmitIntakeLane, *args: Any) -> Answer | None:
        answer = await prepare(self, *args)
        seen.append(answer is not None)
        return answer

    monkeypatch.setattr(SubmitIntakeLane, "prepare", watched)
    return seen


async def _audit_rows(engine: AsyncEngine, patient_id: str) -> list[tuple[Any, ...]]:
    rows = await query(
        engine,
        "SELECT actor_name, actor_role, actor_kind, action, method, path, resource_type, resource_id, "
        "outcome, status, detail, patient_ids, request_id IS NOT NULL FROM access.audit_events "
        "WHERE CAST(:p AS uuid) = ANY(patient_ids) ORDER BY at",
        p=patient_id,
    )
    return [tuple(r) for r in rows]


async def test_the_lane_answers_a_submission_exactly_as_the_route_does(
    client: AsyncTestClient[Any],
    make_key: MakeKey,
    engine: AsyncEngine,
    lane_answers: list[bool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = auth(await make_key("front_desk", name=f"desk-{uuid.uuid4().hex[:6]}"))
    before = metric((await client.get("/metrics")).text, "clinic_http_requests_total", path="/v1/intakes",
                    method="POST", status_code="201")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="clinic.request"):
        # A key the process has not looked up yet goes the route's way (which caches it); then
        # the lane takes the same request.
        by_route = await client.post("/v1/intakes", json=intake_form(), headers=key)
        by_lane = await client.post("/v1/intakes", json=intake_form(), headers=key)
    assert lane_answers == [True]  # the lane saw only the second: the first key was not cached

    assert by_route.status_code == by_lane.status_code == 201
    assert set(by_route.headers) == set(by_lane.headers)
    for name in set(by_route.headers) - PER_RESPONSE_HEADERS:
        assert by_route.headers[name] == by_lane.headers[name], name
    route, lane = by_route.json(), by_lane.json()
    assert by_lane.headers["location"] == f"/v1/intakes/{lane['id']}"
    assert route["patient"].pop("mrn") != lane["patient"].pop("mrn")  # the forms differ only there
    assert {k: v for k, v in route.items() if k not in PER_SUBMISSION} == {
        k: v for k, v in lane.items() if k not in PER_SUBMISSION
    }

    # The same event, the same audit row (the patient each concerns), the same log line, counted.
    for answer in (route, lane):
        [event] = await events_for(engine, answer["id"])
        assert event["type"] == "intake.submitted" and event["data"]["patient_id"] == answer["patient_id"]
    [route_row] = await _audit_rows(engine, route["patient_id"])
    [lane_row] = await _audit_rows(engine, lane["patient_id"])
    assert route_row == (*lane_row[:-2], route_row[-2], True)
    assert lane_row[-2] == [uuid.UUID(lane["patient_id"])]
    assert lane_row[3:7] == ("submitIntake", "POST", "/v1/intakes", "intakes") and lane_row[8] == "ok"
    logged = [
        r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "request_finished"
    ]
    assert [{k: e[k] for k in ("method", "path", "status")} for e in logged] == [
        {"method": "POST", "path": "/v1/intakes", "status": 201}
    ] * 2
    assert [e["request_id"] for e in logged] == [
        by_route.headers["x-request-id"],
        by_lane.headers["x-request-id"],
    ]
    after = metric((await client.get("/metrics")).text, "clinic_http_requests_total", path="/v1/intakes",
                   method="POST", status_code="201")  # fmt: skip
    assert after == before + 2


async def test_an_idempotent_retry_through_the_lane_replays_the_first_answer(
    client: AsyncTestClient[Any], make_key: MakeKey, lane_answers: list[bool]
) -> None:
    key = auth(await make_key("front_desk"))
    await client.get("/v1/intakes?limit=1", headers=key)  # the key is now cached
    form = intake_form()
    headers = {**key, "Idempotency-Key": f"retry-{uuid.uuid4().hex}"}
    first = await client.post("/v1/intakes", json=form, headers=headers)
    again = await client.post("/v1/intakes", json=form, headers=headers)
    assert lane_answers == [True, True]
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = await client.post("/v1/intakes", json=intake_form(notes="another body"), headers=headers)
    assert other.status_code == 409 and other.headers["content-type"] == "application/problem+json"


async def test_what_the_lane_does_not_take_the_route_answers_as_before(
    client: AsyncTestClient[Any], make_key: MakeKey, lane_answers: list[bool]
) -> None:
    desk = auth(await make_key("front_desk"))
    clinician = auth(await make_key("clinician"))
    for key in (desk, clinician):  # both keys cached
        assert (await client.get("/v1/intakes?limit=1", headers=key)).status_code == 200

    bad = intake_form()
    bad["complaint"]["intensity"] = 11
    bad["patient"]["sex"] = "martian"
    refused = await client.post("/v1/intakes", json=bad, headers=desk)
    assert refused.status_code == 422
    assert {e["field"] for e in refused.json()["errors"]} == {"complaint.intensity", "patient.sex"}

    wrong_role = await client.post("/v1/intakes", json=intake_form(), headers=clinician)
    assert wrong_role.status_code == 403

    as_text = await client.post(
        "/v1/intakes", content=b"{not json", headers={**desk, "Content-Type": "application/json"}
    )
    assert as_text.status_code == 400 and as_text.headers["content-type"] == "application/problem+json"
    # The lane looked at the first two and left them to the route; the others it never took up
    # (a role it does not admit).
    assert lane_answers == [False, False]


@pytest.fixture
async def timing_out(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncEngine]]:
    """The intake app on its own pool, whose statements give up after half a second."""
    quick = dataclasses.replace(settings, db_statement_timeout_seconds=0.5)
    engine = create_engine(settings.database_url or "", quick)
    try:
        async with serve(create_app(quick, engine)) as client:
            yield client, engine
    finally:
        await engine.dispose()


async def test_a_database_failure_inside_the_lane_is_the_routes_503_and_stores_nothing(
    timing_out: tuple[httpx.AsyncClient, AsyncEngine],
    make_key: MakeKey,
    settings: Settings,
    lane_answers: list[bool],
) -> None:
    client, engine = timing_out
    key = auth(await make_key("front_desk"))
    await client.get("/v1/intakes?limit=1", headers=key)
    form = intake_form()
    holder = await asyncpg.connect(libpq_url(settings.database_url or ""))
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE intake.intake_versions IN ACCESS EXCLUSIVE MODE")
            stuck = await client.post("/v1/intakes", json=form, headers=key)
    finally:
        await holder.close()
    assert lane_answers == [True]
    assert stuck.status_code == 503, stuck.text
    assert stuck.headers["content-type"] == "application/problem+json"
    assert int(stuck.headers["retry-after"]) > 0
    assert stuck.headers["cache-control"] == "no-store"  # the security headers, as on any answer
    mrn = form["patient"]["mrn"]
    assert await query(engine, "SELECT 1 FROM intake.patients WHERE mrn = :m", m=mrn) == []


async def test_a_known_mrn_through_the_lane_is_that_patients_new_intake(
    client: AsyncTestClient[Any], make_key: MakeKey, engine: AsyncEngine, lane_answers: list[bool]
) -> None:
    key = auth(await make_key("front_desk"))
    await client.get("/v1/intakes?limit=1", headers=key)
    mrn = f"LANE-{uuid.uuid4().hex[:10]}"
    first = await client.post("/v1/intakes", json=intake_form(mrn), headers=key)
    again = await client.post("/v1/intakes", json=intake_form(mrn, notes="back again"), headers=key)
    assert lane_answers == [True, True]
    assert first.status_code == again.status_code == 201
    assert again.json()["patient_id"] == first.json()["patient_id"]
    assert again.json()["id"] != first.json()["id"] and again.json()["notes"] == "back again"
    assert len(await query(engine, "SELECT 1 FROM intake.patients WHERE mrn = :m", m=mrn)) == 1
    for answer in (first.json(), again.json()):
        assert [e["type"] for e in await events_for(engine, answer["id"])] == ["intake.submitted"]
    audited = await query(
        engine,
        "SELECT count(*) FROM access.audit_events "
        "WHERE action = 'submitIntake' AND CAST(:p AS uuid) = ANY(patient_ids)",
        p=first.json()["patient_id"],
    )
    assert audited[0][0] == 2
