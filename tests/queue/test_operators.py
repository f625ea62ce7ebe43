"""Property 6, the operator's side: `clinic events dead|replay` and the admin endpoints, which
show a service only its own consumers' dead deliveries."""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.contracts.events import Envelope
from services.common.http.web import ServiceSpec, build_app
from services.common.queue import Consumer
from services.common.settings import Settings
from tests.conftest import MakeKey, auth, clinic_on, query
from tests.queue.support import Lane


async def _kill(engine: AsyncEngine, consumer: str, error: str) -> list[int]:
    """Make the consumer's deliveries dead, as running out of attempts would."""
    rows = await query(
        engine,
        "UPDATE queue.deliveries SET status = 'dead', attempts = 8, last_error = :e, "
        "updated_at = now() WHERE consumer = :c RETURNING id",
        c=consumer,
        e=error,
    )
    return sorted(row.id for row in rows)


async def test_clinic_events_lists_dead_deliveries_and_replays_one(
    lane: Lane, database_url: str, engine: AsyncEngine
) -> None:
    consumer, other = await lane.subscribe("cli.mirror", "cli.other")
    [event_id] = await lane.publish()
    [dead_id] = await _kill(engine, consumer, "ValueError: no such referral")
    await _kill(engine, other, "KeyError: x")

    listed = clinic_on(database_url, "events", "dead", "--consumer", consumer)
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split("\t")[:5] == ["id", "consumer", "event_type", "event_id", "attempts"]
    assert len(lines) == 1
    fields = lines[0].split("\t")
    assert fields[:5] == [str(dead_id), consumer, lane.payload_type.TYPE, str(event_id), "8"]
    assert fields[-1] == "ValueError: no such referral"

    replayed = clinic_on(database_url, "events", "replay", str(dead_id))
    assert replayed.returncode == 0, replayed.stderr
    [delivery] = await lane.deliveries(consumer)
    assert (delivery.id, delivery.status, delivery.attempts) == (dead_id, "pending", 0)

    again = clinic_on(database_url, "events", "replay", str(dead_id))
    assert again.returncode == 1
    assert f"no dead delivery with id {dead_id}" in again.stderr

    # The replay is in the access audit as the API's is, by the operating-system user.
    async with engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT actor_name, actor_role, actor_kind, service, outcome FROM access.audit_events "
                    "WHERE action = 'replayDeadDelivery' AND resource_type = 'events' AND resource_id = :id"
                ),
                {"id": str(dead_id)},
            )
        ).all()
    assert [tuple(row) for row in audited] == [(f"cli:{getpass.getuser()}", "admin", "cli", "cli", "ok")]


async def _nothing(session: AsyncSession, envelope: Envelope) -> None:
    return None


@pytest.fixture
async def owned(lane: Lane) -> tuple[str, str]:
    """Two consumers: the first owned by the service under test, the second by another."""
    mine, theirs = await lane.subscribe("admin.mine", "admin.theirs")
    return mine, theirs


@pytest.fixture
async def admin_client(
    owned: tuple[str, str], settings: Settings, engine: AsyncEngine
) -> AsyncIterator[AsyncTestClient]:
    spec = ServiceSpec(
        name="probe",
        title="probe",
        description="",
        route_handlers=[],
        consumers=[Consumer(owned[0], _nothing)],
    )
    async with AsyncTestClient(build_app(spec, settings, engine, run_workers=False)) as client:
        yield client


async def test_dead_letter_endpoints_show_and_replay_only_the_services_own_consumers(
    admin_client: AsyncTestClient,
    owned: tuple[str, str],
    lane: Lane,
    engine: AsyncEngine,
    make_key: MakeKey,
) -> None:
    mine, theirs = owned
    events = await lane.publish(3)
    my_dead = await _kill(engine, mine, "RuntimeError: boom")
    [their_dead, *_] = await _kill(engine, theirs, "RuntimeError: not yours")
    headers = auth(await make_key("admin"))

    first = await admin_client.get("/v1/events/dead", params={"limit": 2}, headers=headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [i["id"] for i in page["items"]] == my_dead[::-1][:2]
    assert {i["consumer"] for i in page["items"]} == {mine}
    assert page["items"][0]["last_error"] == "RuntimeError: boom"
    rest = await admin_client.get(
        "/v1/events/dead", params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers
    )
    assert [i["id"] for i in rest.json()["items"]] == my_dead[:1]
    assert rest.json()["next_cursor"] is None
    assert {i["event_id"] for i in [*page["items"], *rest.json()["items"]]} == {str(e) for e in events}

    not_theirs = await admin_client.post(f"/v1/events/dead/{their_dead}/replay", headers=headers)
    assert not_theirs.status_code == 404
    assert not_theirs.headers["content-type"].startswith("application/problem+json")
    replayed = await admin_client.post(f"/v1/events/dead/{my_dead[0]}/replay", headers=headers)
    assert replayed.status_code == 200
    assert replayed.json() == {"id": my_dead[0], "status": "pending"}
    statuses = {d.id: d.status for d in await lane.deliveries(mine)}
    assert statuses[my_dead[0]] == "pending"
    assert [d.status for d in await lane.deliveries(theirs)] == ["dead"] * 3


async def test_dead_letter_endpoints_are_for_admins_only(
    admin_client: AsyncTestClient,
    make_key: MakeKey,
) -> None:
    clinician = auth(await make_key("clinician"))
    assert (await admin_client.get("/v1/events/dead", headers=clinician)).status_code == 403
    assert (await admin_client.post("/v1/events/dead/1/replay", headers=clinician)).status_code == 403
    assert (await admin_client.get("/v1/events/dead")).status_code == 401


async def test_bad_cursor_or_limit_is_a_422_naming_it(
    admin_client: AsyncTestClient,
    make_key: MakeKey,
) -> None:
    headers = auth(await make_key("admin"))
    for params, field in [
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
    ]:
        response = await admin_client.get("/v1/events/dead", params=params, headers=headers)
        assert response.status_code == 422, params
        assert [e["field"] for e in response.json()["errors"]] == [field]
