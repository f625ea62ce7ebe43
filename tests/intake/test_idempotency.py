"""`Idempotency-Key`: a retried request gets the first answer; a reused key with another body is
refused; keys are forgotten after the configured hours."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import FakeClock
from services.common.settings import Settings
from services.intake.app import create_app
from tests.conftest import MakeKey, auth, query_value
from tests.intake.conftest import Counts, events_for, intake_form


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_same_key_and_body_returns_the_first_response(
    client: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine, row_counts: Counts
) -> None:
    key = uuid.uuid4().hex
    form = intake_form()
    first = await client.post("/v1/intakes", json=form, headers=keyed(front_desk, key))
    after_first = await row_counts()
    # The same meaning in other bytes: keys reordered, other whitespace.
    again = json.dumps(dict(reversed(list(form.items()))), indent=2).encode()
    second = await client.post(
        "/v1/intakes", content=again, headers={**keyed(front_desk, key), "content-type": "application/json"}
    )

    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == first.headers["location"]
    assert await row_counts() == after_first
    assert [e["type"] for e in await events_for(engine, first.json()["id"])] == ["intake.submitted"]


async def test_same_key_with_another_body_is_409_and_stores_nothing(
    client: AsyncTestClient[Any], front_desk: dict[str, str], row_counts: Counts
) -> None:
    key = uuid.uuid4().hex
    form = intake_form()
    assert (await client.post("/v1/intakes", json=form, headers=keyed(front_desk, key))).status_code == 201
    before = await row_counts()
    form["complaint"]["intensity"] = 9
    response = await client.post("/v1/intakes", json=form, headers=keyed(front_desk, key))

    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "idempotency key" in response.json()["detail"]
    assert await row_counts() == before


async def test_keys_belong_to_their_api_key(
    client: AsyncTestClient[Any], front_desk: dict[str, str], make_key: MakeKey
) -> None:
    other_desk = auth(await make_key("front_desk"))
    key = uuid.uuid4().hex
    first = await client.post("/v1/intakes", json=intake_form(), headers=keyed(front_desk, key))
    other = await client.post("/v1/intakes", json=intake_form(), headers=keyed(other_desk, key))
    assert first.status_code == other.status_code == 201
    assert first.json()["id"] != other.json()["id"]


async def test_concurrent_retries_store_one_intake(
    client: AsyncTestClient[Any], front_desk: dict[str, str], row_counts: Counts
) -> None:
    key = uuid.uuid4().hex
    form = intake_form()
    before = await row_counts()
    responses = await asyncio.gather(
        *[client.post("/v1/intakes", json=form, headers=keyed(front_desk, key)) for _ in range(5)]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    after = await row_counts()
    assert after["intake.intakes"] == before["intake.intakes"] + 1
    assert after["queue.events"] == before["queue.events"] + 1


async def test_keys_are_kept_for_the_configured_hours_then_forgotten(
    client: AsyncTestClient[Any], front_desk: dict[str, str]
) -> None:
    clock = FakeClock()
    client.app.state["clinic_clock"] = clock
    key = uuid.uuid4().hex
    form = intake_form()
    first = await client.post("/v1/intakes", json=form, headers=keyed(front_desk, key))

    clock.advance(datetime.timedelta(hours=23, minutes=59))
    changed = intake_form(form["patient"]["mrn"])
    changed["complaint"]["intensity"] = 2
    assert (await client.post("/v1/intakes", json=changed, headers=keyed(front_desk, key))).status_code == 409

    clock.advance(datetime.timedelta(minutes=2))
    fresh = await client.post("/v1/intakes", json=changed, headers=keyed(front_desk, key))
    assert fresh.status_code == 201
    assert fresh.json()["id"] != first.json()["id"]
    replay = await client.post("/v1/intakes", json=changed, headers=keyed(front_desk, key))
    assert replay.content == fresh.content


async def test_an_amendment_can_be_retried_safely(
    client: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    intake = (await client.post("/v1/intakes", json=intake_form(), headers=front_desk)).json()
    key = uuid.uuid4().hex
    form = intake_form(intake["patient"]["mrn"], notes="worse at night")
    url = f"/v1/intakes/{intake['id']}/amendments"
    first = await client.post(url, json=form, headers=keyed(front_desk, key))
    second = await client.post(url, json=form, headers=keyed(front_desk, key))
    assert first.status_code == second.status_code == 201
    assert second.content == first.content and first.json()["version"] == 2
    types = [e["type"] for e in await events_for(engine, intake["id"])]
    assert types == ["intake.submitted", "intake.amended"]


async def test_the_key_table_keeps_no_patient_data_and_a_replay_rebuilds_the_same_answer(
    client: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    key = uuid.uuid4().hex
    form = intake_form(notes="sleeps badly on the left side")
    form["patient"] |= {"given_name": "Zebulon", "family_name": "Quartermaine", "phone": "+1 555 0142"}
    first = await client.post("/v1/intakes", json=form, headers=keyed(front_desk, key))
    assert first.status_code == 201

    stored = await query_value(
        engine, "SELECT to_jsonb(k)::text AS row FROM intake.idempotency_keys k WHERE key = :k", k=key
    )
    for personal in ("Zebulon", "Quartermaine", "555 0142", "sleeps badly", form["patient"]["mrn"]):
        assert personal not in stored
    assert first.json()["id"] in stored

    replay = await client.post("/v1/intakes", json=form, headers=keyed(front_desk, key))
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    assert replay.headers["location"] == first.headers["location"]


async def test_the_sweep_deletes_expired_keys_and_keeps_live_ones(
    settings: Settings, engine: AsyncEngine, client: AsyncTestClient[Any], front_desk: dict[str, str]
) -> None:
    live = uuid.uuid4().hex
    assert (
        await client.post("/v1/intakes", json=intake_form(), headers=keyed(front_desk, live))
    ).status_code == 201
    expired = uuid.uuid4().hex
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO intake.idempotency_keys (scope, key, request_hash, status_code, created_at, "
                "expires_at) VALUES ('key:old', :k, 'x', 201, now() - interval '2 days', "
                "now() - interval '1 day')"
            ),
            {"k": expired},
        )

    async def left() -> set[str]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT key FROM intake.idempotency_keys WHERE key IN (:a, :b)"),
                {"a": live, "b": expired},
            )
            return {row.key for row in rows}

    # The intake service's background sweep runs when it starts, then hourly.
    async with AsyncTestClient(create_app(settings, engine, run_workers=True)):
        for _ in range(100):
            if await left() == {live}:
                break
            await asyncio.sleep(0.1)
    assert await left() == {live}
