"""The access audit: a row for each kind of access, written with the write it records; the
application cannot alter it; only the retention purge deletes; admins query it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access import accounts, staff_sessions
from services.common.access.audit_retention import purge_older_than
from services.common.settings import Settings
from services.intake.app import create_app
from tests.conftest import MakeKey, auth
from tests.intake.conftest import intake_form


@pytest.fixture
async def client(settings: Settings, engine: AsyncEngine) -> Any:
    async with AsyncTestClient(create_app(settings, engine)) as test_client:
        yield test_client


async def rows_for(engine: AsyncEngine, request_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT * FROM access.audit_events WHERE request_id = :r ORDER BY at"), {"r": request_id}
        )
        return [dict(r._mapping) for r in result]


async def test_a_write_and_a_read_are_each_recorded_with_actor_and_patient(
    client: AsyncTestClient[Any], engine: AsyncEngine, make_key: MakeKey
) -> None:
    name = f"reception-{uuid.uuid4().hex[:6]}"
    key = auth(await make_key("front_desk", name=name))
    created = await client.post(
        "/v1/intakes", json=intake_form(), headers={**key, "x-request-id": "w-" + name}
    )
    assert created.status_code == 201
    intake = created.json()
    [write] = await rows_for(engine, "w-" + name)
    assert write["action"] == "submitIntake" and write["outcome"] == "ok"
    assert write["actor_name"] == name and write["actor_role"] == "front_desk" and write["actor_id"]
    assert write["patient_ids"] == [uuid.UUID(intake["patient_id"])]
    assert write["service"] == "intake" and write["method"] == "POST"

    read = await client.get(f"/v1/intakes/{intake['id']}", headers={**key, "x-request-id": "r-" + name})
    assert read.status_code == 200
    [row] = await rows_for(engine, "r-" + name)
    assert row["action"] == "getIntake" and row["resource_id"] == intake["id"]
    assert row["patient_ids"] == [uuid.UUID(intake["patient_id"])]
    assert row["actor_id"] == write["actor_id"]

    listed = await client.get(
        "/v1/intakes", params={"mrn": intake["patient"]["mrn"]}, headers={**key, "x-request-id": "l-" + name}
    )
    assert listed.status_code == 200
    [row] = await rows_for(engine, "l-" + name)
    assert row["action"] == "listIntakes" and uuid.UUID(intake["patient_id"]) in row["patient_ids"]


async def test_refusals_and_rejected_writes_are_recorded_and_store_nothing_else(
    client: AsyncTestClient[Any], engine: AsyncEngine, make_key: MakeKey
) -> None:
    tag = uuid.uuid4().hex[:6]
    specialist = auth(await make_key("specialist", destination="urgent_care"))
    front = auth(await make_key("front_desk"))
    await client.get("/v1/intakes", headers={"x-request-id": "n-" + tag})
    await client.get("/v1/intakes", headers={**specialist, "x-request-id": "s-" + tag})
    bad = await client.post(
        "/v1/intakes", json={"patient": {}}, headers={**front, "x-request-id": "b-" + tag}
    )
    assert bad.status_code == 422
    [none] = await rows_for(engine, "n-" + tag)
    assert (none["outcome"], none["status"], none["actor_name"]) == ("denied", 401, "anonymous")
    [wrong] = await rows_for(engine, "s-" + tag)
    assert (wrong["outcome"], wrong["status"], wrong["actor_role"]) == ("denied", 403, "specialist")
    [rejected] = await rows_for(engine, "b-" + tag)
    assert (rejected["outcome"], rejected["status"], rejected["patient_ids"]) == ("rejected", 422, [])


async def test_the_application_cannot_alter_or_delete_audit_rows(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session:
        await session.execute(
            text(
                "INSERT INTO access.audit_events (service, actor_name, actor_kind, action, outcome)"
                " VALUES ('intake', 'probe', 'key', 'probe', 'ok')"
            )
        )
        await session.commit()
    for statement in (
        "UPDATE access.audit_events SET actor_name = 'someone else' WHERE actor_name = 'probe'",
        "DELETE FROM access.audit_events WHERE actor_name = 'probe'",
        "TRUNCATE access.audit_events",
    ):
        async with AsyncSession(engine) as session:
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(text(statement))
    async with engine.connect() as conn:
        left = (
            await conn.execute(text("SELECT count(*) FROM access.audit_events WHERE actor_name = 'probe'"))
        ).scalar_one()
    assert left >= 1


async def test_the_purge_deletes_only_rows_past_retention(engine: AsyncEngine) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=7 * 366)
    marker = f"retention-{uuid.uuid4().hex[:6]}"
    async with engine.begin() as conn:
        for at in (old, dt.datetime.now(dt.UTC)):
            await conn.execute(
                text(
                    "INSERT INTO access.audit_events (at, service, actor_name, actor_kind, action, outcome)"
                    " VALUES (:at, 'intake', :n, 'key', 'probe', 'ok')"
                ),
                {"at": at, "n": marker},
            )
    await purge_older_than(engine, dt.datetime.now(dt.UTC) - dt.timedelta(days=6 * 366))
    async with engine.connect() as conn:
        kept = (
            (
                await conn.execute(
                    text("SELECT at FROM access.audit_events WHERE actor_name = :n"), {"n": marker}
                )
            )
            .scalars()
            .all()
        )
    assert len(kept) == 1 and kept[0] > old


async def test_admins_query_the_audit_by_patient_and_actor(
    client: AsyncTestClient[Any], make_key: MakeKey
) -> None:
    name = f"reception-{uuid.uuid4().hex[:6]}"
    key = auth(await make_key("front_desk", name=name))
    admin = auth(await make_key("admin"))
    intake = (await client.post("/v1/intakes", json=intake_form(), headers=key)).json()
    await client.get(f"/v1/intakes/{intake['id']}", headers=key)
    page = await client.get(
        "/v1/audit", params={"patient_id": intake["patient_id"], "limit": 1}, headers=admin
    )
    assert page.status_code == 200
    first = page.json()
    assert [i["action"] for i in first["items"]] == ["getIntake"] and first["next_cursor"]
    second = await client.get(
        "/v1/audit",
        params={"patient_id": intake["patient_id"], "limit": 1, "cursor": first["next_cursor"]},
        headers=admin,
    )
    assert [i["action"] for i in second.json()["items"]] == ["submitIntake"]
    by_actor = await client.get("/v1/audit", params={"actor": name}, headers=admin)
    assert {i["actor_name"] for i in by_actor.json()["items"]} == {name}
    assert (await client.get("/v1/audit", headers=key)).status_code == 403


async def test_a_page_read_is_recorded_under_the_signed_in_account(
    client: AsyncTestClient[Any], engine: AsyncEngine, make_key: MakeKey, settings: Settings
) -> None:
    """The pages' reads name the staff account by id (`actor_kind` `account`), as the API's name
    the key."""
    created = await client.post("/v1/intakes", json=intake_form(), headers=auth(await make_key("front_desk")))
    assert created.status_code == 201
    intake = created.json()
    email = f"desk-{uuid.uuid4().hex[:6]}@clinic.example"
    now = dt.datetime.now(dt.UTC)
    async with AsyncSession(engine) as session:
        password, user = await accounts.create_user(
            session, role="front_desk", name="Desk Person", email=email, destination=None, now=now
        )
        user.must_change_password = False
        user_id = user.id
        token = await staff_sessions.sign_in(
            session,
            email,
            password,
            staff_sessions.Attempt(client_address="10.0.0.8", request_id="s", at=now),
            settings,
        )
        await session.commit()
    request_id = f"page-{uuid.uuid4().hex[:8]}"
    page = await client.get(
        f"/intakes/{intake['id']}", headers={"cookie": f"clinic_session={token}", "x-request-id": request_id}
    )
    assert page.status_code == 200, page.text
    assert intake["patient"]["family_name"] in page.text
    [row] = await rows_for(engine, request_id)
    assert (row["actor_id"], row["actor_name"], row["actor_kind"]) == (user_id, "Desk Person", "account")
    assert row["outcome"] == "ok" and uuid.UUID(intake["patient_id"]) in row["patient_ids"]
