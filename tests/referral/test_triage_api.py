"""The ruleset as a clinic reads it, and a preview that stores and emits nothing."""

from __future__ import annotations

import json
import uuid

import msgspec
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.clock import FakeClock
from services.common.contracts.intake_body import decode_intake
from services.common.settings import Settings
from services.referral.referrals.lifecycle import ReferralDraft, create_referral
from services.referral.triage import triage
from services.referral.triage.v1 import RULES as V1_RULES
from services.referral.triage.v2 import RULES, RULESET_VERSION
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
    assert document["changes_from"] == "v1" and document["changes"]


async def test_rules_of_an_earlier_version_are_served_by_name(
    referral_client: AsyncClient, make_key: MakeKey
) -> None:
    headers = auth(await make_key("clinician"))
    response = await referral_client.get("/v1/triage/rules", params={"version": "v1"}, headers=headers)
    assert response.status_code == 200
    document = response.json()
    assert document["ruleset_version"] == "v1"
    assert [r["code"] for r in document["rules"]] == [r.code for r in V1_RULES]
    current = await referral_client.get("/v1/triage/rules", params={"version": "v2"}, headers=headers)
    assert current.json()["ruleset_version"] == "v2"


async def test_rules_of_an_unknown_version_are_a_problem_naming_the_versions(
    referral_client: AsyncClient, make_key: MakeKey
) -> None:
    response = await referral_client.get(
        "/v1/triage/rules", params={"version": "v9"}, headers=auth(await make_key("clinician"))
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    [error] = response.json()["errors"]
    assert error["field"] == "version" and error["allowed"] == ["v1", "v2"]


async def test_rules_need_a_key(referral_client: AsyncClient) -> None:
    assert (await referral_client.get("/v1/triage/rules")).status_code == 401


async def test_preview_routes_each_vignette_and_stores_nothing(
    referral_client: AsyncClient, make_key: MakeKey, engine: AsyncEngine, clock: FakeClock
) -> None:
    headers = auth(await make_key("front_desk"))
    before = await _counts(engine)
    for vignette in load_vignettes(clock.now().date()):
        response = await referral_client.post("/v1/triage/preview", json=vignette.body, headers=headers)
        assert response.status_code == 200, (vignette.id, response.text)
        outcome = response.json()
        assert (outcome["destination"], outcome["priority"]) == (
            vignette.expect.destination,
            vignette.expect.priority,
        ), vignette.id
        assert outcome["reasons"][0]["code"] == vignette.expect.reason_codes[0], vignette.id
        assert set(vignette.expect.reason_codes) <= {r["code"] for r in outcome["reasons"]}
        assert outcome["ruleset_version"] == RULESET_VERSION
    assert await _counts(engine) == before


async def test_preview_reads_the_body_as_strictly_as_the_intake_service(
    referral_client: AsyncClient, make_key: MakeKey, engine: AsyncEngine, clock: FakeClock
) -> None:
    headers = auth(await make_key("clinician"))
    body = load_vignettes(clock.now().date())[0].body
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


async def test_a_referral_made_under_v1_still_shows_its_v1_explanation(
    referral_client: AsyncClient, make_key: MakeKey, engine: AsyncEngine, settings: Settings, clock: FakeClock
) -> None:
    """A referral stored before ruleset v2 (triaged by v1) keeps the reasons v1 gave, and the
    rules it names are served as `?version=v1`."""
    today = clock.now().date()
    vignette = next(v for v in load_vignettes(today, ruleset="v1") if v.id == "P03")  # v1: REGEN-CANCER
    intake = decode_intake(json.dumps(vignette.body).encode())
    v1_outcome = triage(intake, today, version="v1")
    async with AsyncSession(engine, expire_on_commit=False) as session:
        draft = ReferralDraft(
            intake_id=uuid.uuid4(),
            intake_version=1,
            patient={"given_name": "Test", "family_name": "Patient", "birth_date": "1980-01-01", "mrn": None},
            clinical=None,
            destination=v1_outcome.destination.value,
            priority=v1_outcome.priority.value,
            reasons=[msgspec.to_builtins(r) for r in v1_outcome.reasons],
            ruleset_version=v1_outcome.ruleset_version,
        )
        made = await create_referral(
            session,
            draft,
            now=clock.now(),
            settings=settings,
            by="triage",
        )
        await session.commit()
    headers = auth(await make_key("clinician"))
    shown = (await referral_client.get(f"/v1/referrals/{made.id}", headers=headers)).json()
    assert shown["ruleset_version"] == "v1"
    assert [r["code"] for r in shown["reasons"]] == ["REGEN-CANCER"]
    v1_rules = (
        await referral_client.get("/v1/triage/rules", params={"version": "v1"}, headers=headers)
    ).json()
    by_code = {r["code"]: r for r in v1_rules["rules"]}
    assert shown["reasons"][0]["text"] == by_code["REGEN-CANCER"]["text"]
    assert triage(intake, today).reasons[0].code == "CANCER-HX", "v2 would explain it otherwise"
