"""The ruleset as a clinic reads it, and a preview that stores and emits nothing."""

from __future__ import annotations

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import FakeClock
from services.referral.triage import RULES, RULESET_VERSION
from services.vignettes import load_vignettes
from tests.conftest import MakeKey, auth


async def _counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        referrals = (await conn.execute(text("SELECT count(*) FROM referral.referrals"))).scalar_one()
        # Follow-up schedulers of this or earlier tests may emit on their own; a preview would not.
        events = (
            await conn.execute(
                text("SELECT count(*) FROM queue.events WHERE type <> 'referral.follow_up_due'")
            )
        ).scalar_one()
    return referrals, events


async def test_rules_list_every_code_with_text_source_and_version(
    referral_client: AsyncClient, make_key: MakeKey
) -> None:
    response = await referral_client.get(
        "/v1/triage/rules", headers=auth(await make_key("specialist", "pain_management"))
    )
    assert response.status_code == 200
    document = response.json()
    assert document["ruleset_version"] == RULESET_VERSION
    assert [r["code"] for r in document["rules"]] == [r.code for r in RULES]
    assert all(r["text"] and r["source"] and r["destination"] and r["priority"] for r in document["rules"])
    assert document["thresholds"]["chronic_weeks"] == 12


async def test_rules_need_a_key(referral_client: AsyncClient) -> None:
    assert (await referral_client.get("/v1/triage/rules")).status_code == 401


async def test_preview_routes_each_vignette_and_stores_nothing(
    referral_client: AsyncClient, make_key: MakeKey, engine: AsyncEngine, clock: FakeClock
) -> None:
    headers = auth(await make_key("front_desk"))
    before = await _counts(engine)
    for vignette in load_vignettes(clock.now().date(), ruleset="v1"):
        response = await referral_client.post("/v1/triage/preview", json=vignette.body, headers=headers)
        assert response.status_code == 200, (vignette.id, response.text)
        outcome = response.json()
        assert (outcome["destination"], outcome["priority"]) == (
            vignette.expect.destination,
            vignette.expect.priority,
        ), vignette.id
        assert set(vignette.expect.reason_codes) <= {r["code"] for r in outcome["reasons"]}
        assert outcome["ruleset_version"] == RULESET_VERSION
    assert await _counts(engine) == before


async def test_preview_reads_the_body_as_strictly_as_the_intake_service(
    referral_client: AsyncClient, make_key: MakeKey, engine: AsyncEngine, clock: FakeClock
) -> None:
    headers = auth(await make_key("clinician"))
    body = load_vignettes(clock.now().date(), ruleset="v1")[0].body
    body["complaint"]["intensity"] = "6"
    before = await _counts(engine)
    response = await referral_client.post("/v1/triage/preview", json=body, headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["complaint.intensity"]
    body["complaint"]["intensity"] = 6
    body["complaint"]["onset_date"] = "2026-01-01"
    response = await referral_client.post("/v1/triage/preview", json=body, headers=headers)
    assert response.status_code == 422
    assert "complaint.onset_date" in [e["field"] for e in response.json()["errors"]]
    assert await _counts(engine) == before
