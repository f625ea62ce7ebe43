"""The front desk's pages in a real browser: sign-in, intakes from the public vignettes routed
on the page, every error at once, patient matching, amendment, sign-out, expiry, CSRF, keyboard
use, and axe-core on each page."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access import accounts
from services.common.contracts.labels import RED_FLAG_QUESTIONS, label
from services.vignettes import Vignette, load_vignettes
from tests.pages.conftest import PASSWORD, Site, assert_accessible, make_user, screenshot, sign_in

pytestmark = pytest.mark.browser
TODAY = dt.datetime.now(dt.UTC).date()
VIGNETTES = {v.id: v for v in load_vignettes(TODAY)}


def vignette(destination: str, *, red_flag: bool) -> Vignette:
    for v in VIGNETTES.values():
        if v.expect.destination != destination:
            continue
        answers = set(v.body["red_flags"].values())
        if red_flag == ("yes" in answers) and (red_flag or "unsure" not in answers):
            return v
    raise AssertionError(f"no public vignette for {destination}")


#: A routine case with no red flag: pain management.
ROUTINE = vignette("pain_management", red_flag=False)


async def send_intake(page: Page, site: Site, body: dict[str, Any]) -> None:
    """Open a new intake form, fill it as the body says and send it."""
    await page.goto(f"{site.intake}/intakes/new")
    await fill_intake(page, body)
    await page.get_by_role("button", name="Send the intake").click()


async def fill_intake(page: Page, body: dict[str, Any], *, mrn: bool = True) -> None:
    """Fill the new-intake form with the mouse and typing, as the body says."""
    p = body["patient"]
    await page.get_by_label("Given name").fill(p["given_name"])
    await page.get_by_label("Family name").fill(p["family_name"])
    await page.get_by_label("Date of birth").fill(p["birth_date"])
    if mrn and p.get("mrn"):
        await page.get_by_label("Medical record number (MRN)").fill(p["mrn"])
    c = body["complaint"]
    regions = page.get_by_role("group", name=re.compile("^Where is the pain"))
    for region in c["regions"]:
        await regions.get_by_label(label(region), exact=True).check()
    how_long = page.get_by_role("group", name=re.compile("^How long has the pain lasted"))
    if c.get("onset_date"):
        await how_long.get_by_label("I know the date it started").check()
        await page.get_by_label("Date the pain started").fill(c["onset_date"])
    else:
        await how_long.get_by_label("I know how many weeks").check()
        await page.get_by_label("Number of weeks").fill(str(c["duration_weeks"]))
    await page.get_by_label(re.compile("^Pain today")).fill(str(c["intensity"]))
    await (
        page.get_by_role("group", name=re.compile("^Is the pain getting better"))
        .get_by_label(label(c["trend"]), exact=True)
        .check()
    )
    spread = page.get_by_role("group", name=re.compile("^Does the pain spread"))
    for limb in c.get("radiates_to", []):
        await spread.get_by_label(label(limb), exact=True).check()
    for name, answer in body["red_flags"].items():
        await (
            page.get_by_role("group", name=RED_FLAG_QUESTIONS[name])
            .get_by_label(label(answer), exact=True)
            .check()
        )
    for group, values in (
        ("^Other symptoms", body.get("symptoms", [])),
        ("^Conditions a doctor", body.get("conditions", [])),
        ("^Risk factors", body.get("risk_factors", [])),
    ):
        box = page.get_by_role("group", name=re.compile(group))
        for value in values:
            await box.get_by_label(label(value), exact=True).check()
    for i, row in enumerate(body.get("treatments_tried", [])):
        if i >= await page.locator("fieldset.treatment-row").count():
            await page.get_by_role("button", name="Add another treatment").click()
        group = page.get_by_role("group", name=f"Treatment {i + 1}", exact=True)
        await group.get_by_label("Treatment", exact=True).select_option(row["treatment"])
        await group.get_by_label("How much it helped").select_option(row["outcome"])
        if row.get("weeks") is not None:
            await group.get_by_label(re.compile("^For how many weeks")).fill(str(row["weeks"]))
    procedure = body.get("regenerative_procedure")
    asked = page.get_by_role("group", name=re.compile("^Has the patient had a regenerative procedure"))
    if procedure:
        await asked.get_by_label("Yes", exact=True).check()
        await page.get_by_label(re.compile("^Date of the procedure")).fill(procedure["performed_on"])
        for comp in procedure.get("complications", []):
            await (
                page.get_by_role("group", name=re.compile("^Complications since"))
                .get_by_label(label(comp))
                .check()
            )
    else:
        await asked.get_by_label("No", exact=True).check()
    if body.get("notes"):
        await page.get_by_label("Notes (optional)").fill(body["notes"])


async def test_sign_in_needs_a_new_password_first(page: Page, site: Site) -> None:
    email, temporary = await make_user(site.settings, change_password=False)
    await page.goto(f"{site.intake}/intakes/new")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next=/intakes/new$"))
    await assert_accessible(page)
    await screenshot(page, "sign-in")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("not the password at all")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("The email or the password is not right.")
    await page.get_by_label("Password").fill(temporary)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{site.intake}/password")
    await expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    await assert_accessible(page)
    await page.get_by_label("Current password").fill(temporary)
    await page.get_by_label("New password", exact=True).fill("password1234")
    await page.get_by_label("New password again").fill("password1234")
    await page.get_by_role("button", name="Save the new password").click()
    await expect(page.get_by_role("alert")).to_contain_text("too common")
    await page.get_by_label("Current password").fill(temporary)
    await page.get_by_label("New password", exact=True).fill(PASSWORD)
    await page.get_by_label("New password again").fill(PASSWORD)
    await page.get_by_role("button", name="Save the new password").click()
    await expect(page).to_have_url(f"{site.intake}/")
    await expect(page.get_by_role("heading", name="Front desk", exact=True)).to_be_visible()


async def test_red_flag_intake_is_routed_to_urgent_care_on_the_page(front_desk: Page, site: Site) -> None:
    page = front_desk
    case = vignette("urgent_care", red_flag=True)
    await page.get_by_role("link", name="New intake").first.click()
    await assert_accessible(page)
    await screenshot(page, "new-intake")
    await fill_intake(page, case.body)
    await page.get_by_role("button", name="Send the intake").click()
    await expect(page.get_by_role("heading", name=re.compile("^Intake for"))).to_be_visible()
    routing = page.locator("#routing")
    await expect(routing).to_contain_text("URGENT CARE", timeout=20_000)
    await expect(routing).to_contain_text("Tell the patient now")
    await expect(routing).to_contain_text("Due by")
    await assert_accessible(page)
    await screenshot(page, "intake-urgent-care")
    await page.get_by_role("link", name="Front desk").click()
    urgent = page.locator("h2#urgent + table")
    await expect(urgent).to_contain_text(case.body["patient"]["family_name"])
    await assert_accessible(page)
    await screenshot(page, "front-desk-home")


async def test_routine_intake_shows_destination_reasons_and_due_time(front_desk: Page, site: Site) -> None:
    page = front_desk
    await send_intake(page, site, ROUTINE.body)
    routing = page.locator("#routing")
    await expect(routing).to_contain_text("Sent to Pain management", timeout=20_000)
    await expect(routing).not_to_contain_text("URGENT")
    await expect(routing.get_by_role("listitem").first).not_to_be_empty()
    await expect(routing).to_contain_text("Routine")
    # On a tablet (768 px wide) the form and the intake fit without sideways scrolling.
    await page.set_viewport_size({"width": 768, "height": 1024})
    for path in ("/intakes/new", page.url.removeprefix(site.intake)):
        await page.goto(site.intake + path)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 768


async def test_a_form_with_several_errors_shows_them_all_and_keeps_the_input(
    front_desk: Page, site: Site
) -> None:
    page = front_desk
    await page.goto(f"{site.intake}/intakes/new")
    await page.get_by_label("Given name").fill("Ada")
    await page.get_by_label(re.compile("^Pain today")).fill("15")
    await (
        page.get_by_role("group", name=re.compile("^How long has the pain lasted"))
        .get_by_label("I know how many weeks")
        .check()
    )
    await page.get_by_label("Number of weeks").fill("2700")
    await (
        page.get_by_role("group", name=RED_FLAG_QUESTIONS["saddle_numbness"])
        .get_by_label("No", exact=True)
        .check()
    )
    await page.get_by_role("button", name="Send the intake").click()
    summary = page.get_by_role("alert")
    await expect(summary).to_contain_text("problems with this form")
    links = summary.get_by_role("link")
    texts = await links.all_inner_texts()
    for expected in (
        "Family name",
        "Date of birth",
        "Where is the pain",
        "How many weeks the pain has lasted",
        "Pain today",
        "Is the pain getting better or worse",
        RED_FLAG_QUESTIONS["bladder_or_bowel_dysfunction"],
        RED_FLAG_QUESTIONS["history_of_cancer"],
    ):
        assert any(expected in t for t in texts), (expected, texts)
    assert not any(RED_FLAG_QUESTIONS["saddle_numbness"] in t for t in texts)
    assert len(texts) >= 12
    # Listed in the order of the form.
    assert texts[0].startswith("Family name") and texts[-1].startswith("Regenerative procedure")
    # Each error sits beside its field too, and what was typed is kept.
    await expect(page.locator("#f-complaint-intensity-error")).to_contain_text("Enter a whole number")
    await expect(page.get_by_label("Given name")).to_have_value("Ada")
    await expect(page.get_by_label(re.compile("^Pain today"))).to_have_value("15")
    await expect(
        page.get_by_role("group", name=RED_FLAG_QUESTIONS["saddle_numbness"]).get_by_label("No", exact=True)
    ).to_be_checked()
    # The summary's links lead to the fields.
    await links.filter(has_text="Family name").click()
    await expect(page.get_by_label("Family name")).to_be_focused()
    await assert_accessible(page)
    await screenshot(page, "new-intake-errors")


async def test_a_returning_patient_without_mrn_is_matched_not_duplicated(
    front_desk: Page, site: Site
) -> None:
    page = front_desk
    body = {
        **ROUTINE.body,
        "patient": {**ROUTINE.body["patient"], "family_name": f"Matchson{uuid.uuid4().hex[:6]}"},
    }
    body["patient"].pop("mrn", None)
    await send_intake(page, site, body)
    await expect(page.get_by_role("heading", name=re.compile("^Intake for"))).to_be_visible()
    first_url = page.url

    await send_intake(page, site, body)
    matches = page.get_by_role("group", name="This patient may already be known to the clinic")
    await expect(matches).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "new-intake-patient-match")
    await matches.get_by_label(re.compile(f"{body['patient']['family_name']}, born")).check()
    await matches.get_by_role("button", name="Send the intake for this patient").click()
    await expect(page.get_by_role("heading", name=re.compile("^Intake for"))).to_be_visible()
    assert page.url != first_url

    await page.goto(f"{site.intake}/patients?family_name={body['patient']['family_name']}")
    await expect(page.get_by_role("heading", name="1 patient found")).to_be_visible()
    await expect(page.locator("table tbody tr td:last-child a")).to_have_count(2)
    await assert_accessible(page)
    await screenshot(page, "find-a-patient")


async def test_amend_asks_why_and_versions_show_what_changed(front_desk: Page, site: Site) -> None:
    page = front_desk
    await send_intake(page, site, ROUTINE.body)
    await expect(page.locator("#routing")).to_contain_text("Sent to", timeout=20_000)
    await page.get_by_role("link", name="Change this intake").click()
    await expect(page.get_by_label("Given name")).to_have_value(ROUTINE.body["patient"]["given_name"])
    await assert_accessible(page)
    new_intensity = (ROUTINE.body["complaint"]["intensity"] + 1) % 11
    await page.get_by_label(re.compile("^Pain today")).fill(str(new_intensity))
    await page.get_by_role("button", name="Save the change").click()
    await expect(page.get_by_role("alert")).to_contain_text("Why the intake is being changed")
    await expect(page.get_by_label(re.compile("^Pain today"))).to_have_value(str(new_intensity))
    await page.get_by_label(re.compile("^Why is the intake being changed")).fill(
        "The patient misread the scale."
    )
    await page.get_by_role("button", name="Save the change").click()
    await expect(page.get_by_text(re.compile("^Version 2"))).to_be_visible()
    await page.get_by_role("link", name=re.compile("^Versions")).click()
    changed = page.locator("tr.changed")
    await expect(changed).to_have_count(1)
    await expect(changed).to_contain_text("Pain today")
    await expect(changed).to_contain_text(str(new_intensity))
    await expect(page.get_by_role("table")).to_contain_text("Why: The patient misread the scale.")
    await assert_accessible(page)
    await screenshot(page, "intake-versions")
    await page.goto(page.url.removesuffix("/versions") + "/summary")
    await expect(page.get_by_role("heading", name="Back-pain intake summary")).to_be_visible()
    await page.emulate_media(media="print")
    await expect(page.locator(".site-header")).to_be_hidden()
    await page.emulate_media(media="screen")
    await assert_accessible(page)


async def test_sign_out_ends_the_session_and_is_recorded(
    front_desk: Page, site: Site, engine: AsyncEngine
) -> None:
    page = front_desk
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("You have signed out.")
    await page.goto(f"{site.intake}/")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next=/$"))
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT action, outcome FROM access.sign_in_events WHERE user_id = "
                    "(SELECT user_id FROM access.sign_in_events ORDER BY id DESC LIMIT 1) ORDER BY id"
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [("sign_in", "ok"), ("sign_out", "ok")]


async def test_an_idle_session_expires(front_desk: Page, site: Site) -> None:
    page = front_desk
    await page.goto(f"{site.intake}/intakes/new")
    await expect(page.get_by_role("heading", name="New intake")).to_be_visible()
    site.clock.advance(dt.timedelta(minutes=site.settings.session_idle_minutes + 1))
    try:
        await page.goto(f"{site.intake}/intakes/new")
        await expect(page).to_have_url(re.compile(r"/sign-in\?next=/intakes/new$"))
    finally:
        site.clock.advance(-dt.timedelta(minutes=site.settings.session_idle_minutes + 1))


async def test_a_disabled_account_is_signed_out_everywhere(
    page: Page, site: Site, engine: AsyncEngine
) -> None:
    email, _ = await make_user(site.settings)
    await sign_in(page, site, email)
    await expect(page).to_have_url(f"{site.intake}/")
    async with AsyncSession(engine) as session:
        await accounts.disable_user(session, email, dt.datetime.now(dt.UTC))
        await session.commit()
    await page.goto(f"{site.referral}/password")
    await expect(page).to_have_url(re.compile(r"/sign-in"))
    await page.goto(f"{site.intake}/")
    await expect(page).to_have_url(re.compile(r"/sign-in"))
    await sign_in(page, site, email)
    await expect(page.get_by_role("alert")).to_contain_text("not right")


async def test_a_post_without_the_form_token_is_refused(
    front_desk: Page, site: Site, engine: AsyncEngine
) -> None:
    page = front_desk
    await page.goto(f"{site.intake}/intakes/new")
    response = await page.request.post(
        f"{site.intake}/intakes/new", form={"_csrf": "forged", "patient.given_name": "Eve"}
    )
    assert response.status == 403
    assert "did not come from this site" in await response.text()
    response = await page.request.post(f"{site.intake}/sign-out", form={})
    assert response.status == 403
    await page.goto(f"{site.intake}/")
    await expect(page.get_by_role("heading", name="Front desk", exact=True)).to_be_visible()


async def test_pages_send_security_headers_and_the_api_ignores_the_session(
    front_desk: Page, site: Site
) -> None:
    response = await front_desk.request.get(f"{site.intake}/intakes/new")
    assert response.status == 200
    headers = response.headers
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'self'" in headers["content-security-policy"]
    api = await front_desk.request.get(f"{site.intake}/v1/intakes")
    assert api.status == 401
    htmx = await front_desk.request.get(f"{site.intake}/static/vendor/htmx.min.js")
    assert htmx.status == 200 and htmx.headers["x-content-type-options"] == "nosniff"


async def test_failed_sign_ins_are_throttled_per_account(page: Page, site: Site) -> None:
    email, _ = await make_user(site.settings)
    for _ in range(5):
        await sign_in(page, site, email, "wrong password, again")
        await expect(page.get_by_role("alert")).to_contain_text("not right")
    await sign_in(page, site, email)
    await expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")


async def _focused(page: Page) -> dict[str, Any]:
    return await page.evaluate(
        """() => { const e = document.activeElement; return e ? {
            tag: e.tagName.toLowerCase(), type: e.type || "", name: e.name || "", value: e.value || "",
            checked: !!e.checked, text: (e.innerText || "").trim(), id: e.id || "" } : null }"""
    )


def _wanted(body: dict[str, Any]) -> dict[str, Any]:
    """What each form field should hold for `body`: text by name, radio by name, checkboxes as sets."""
    p, c = body["patient"], body["complaint"]
    want: dict[str, Any] = {f"patient.{k}": str(v) for k, v in p.items() if v is not None and k != "sex"}
    if p.get("sex") and p["sex"] != "unknown":
        want["patient.sex"] = p["sex"]
    want["complaint.regions"] = set(c["regions"])
    want["complaint.radiates_to"] = set(c.get("radiates_to", []))
    if c.get("onset_date"):
        want["duration_kind"], want["complaint.onset_date"] = "onset", c["onset_date"]
    else:
        want["duration_kind"], want["complaint.duration_weeks"] = "weeks", str(c["duration_weeks"])
    want["complaint.intensity"] = str(c["intensity"])
    want["complaint.trend"] = c["trend"]
    for name, answer in body["red_flags"].items():
        want[f"red_flags.{name}"] = answer
    for name in ("symptoms", "conditions", "risk_factors"):
        want[name] = set(body.get(name, []))
    for i, row in enumerate(body.get("treatments_tried", [])):
        for k, v in row.items():
            if v is not None:
                want[f"treatments_tried[{i}].{k}"] = str(v)
    procedure = body.get("regenerative_procedure")
    want["procedure_asked"] = "yes" if procedure else "no"
    if procedure:
        want["regenerative_procedure.performed_on"] = procedure["performed_on"]
        want["regenerative_procedure.complications"] = set(procedure.get("complications", []))
    if body.get("notes"):
        want["notes"] = body["notes"]
    return want


async def _type_date(page: Page, iso: str) -> None:
    year, month, day = iso.split("-")
    await page.keyboard.type(month + day + year)  # the en-US order of a date field's segments


async def test_the_whole_intake_form_can_be_completed_with_the_keyboard_alone(
    front_desk: Page, site: Site
) -> None:
    page = front_desk
    case = vignette("urgent_care", red_flag=True)
    body = {**case.body, "treatments_tried": case.body.get("treatments_tried", [])[:2]}
    want = _wanted(body)
    await page.goto(f"{site.intake}/intakes/new")
    done_radio: set[str] = set()
    last_key = None
    for _ in range(400):
        await page.keyboard.press("Tab")
        el = await _focused(page)
        key = (el["tag"], el["name"], el["value"] if el["type"] in ("radio", "checkbox") else "")
        if key == last_key:  # a date field's next segment: still the same field
            continue
        last_key = key
        name, kind = el["name"], el["type"]
        if el["tag"] == "button" and el["text"] == "Send the intake":
            await page.keyboard.press("Enter")
            break
        if name not in want:
            continue
        target = want[name]
        if kind == "radio" and name not in done_radio:
            while (await _focused(page))["value"] != target:
                await page.keyboard.press("ArrowRight")
            await page.keyboard.press("Space")
            done_radio.add(name)
        elif kind == "checkbox" and el["value"] in target and not el["checked"]:
            await page.keyboard.press("Space")
        elif el["tag"] == "select":
            for _ in range(20):
                if (await _focused(page))["value"] == target:
                    break
                await page.keyboard.press("ArrowDown")
        elif kind == "date":
            await _type_date(page, target)
        elif el["tag"] in ("input", "textarea") and kind not in ("radio", "checkbox", "hidden"):
            await page.keyboard.type(target)
    else:
        raise AssertionError("never reached the send button")
    await expect(page.get_by_role("heading", name=re.compile("^Intake for"))).to_be_visible()
    await expect(page.locator("#routing")).to_contain_text("URGENT CARE", timeout=20_000)
    # The form sent what the keyboard entered.
    await expect(page.get_by_text(f"{body['complaint']['intensity']} out of 10")).to_be_visible()
