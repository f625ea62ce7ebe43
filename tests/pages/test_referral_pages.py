"""The referral service's pages in a real browser: a specialist works a referral from requested
to completed and marks its follow-ups done; another destination's specialist gets a 404 page; a
stale button shows a 409 as a message; a clinician resolves a held case onto a destination's
worklist; the letter prints; the worklist and actions work with the keyboard; axe-core on each."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from playwright.async_api import Browser, Locator, Page, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.contracts.events import IntakeSubmitted
from services.common.contracts.intake_body import IntakeBody
from services.common.contracts.vocabulary import PRIORITY_RANK
from services.common.queue import publish, redact_handled
from services.referral.db.models import Referral
from services.referral.pages.worklist import WORKLIST_PAGE
from services.vignettes import load_vignettes
from tests.pages.conftest import Site, assert_accessible, make_user, screenshot

pytestmark = pytest.mark.browser


async def publish_intake(engine: AsyncEngine, vignette: str) -> str:
    """An intake as the intake service announces it; returns the patient's family name."""
    body: dict[str, Any] = next(v for v in load_vignettes(dt.date.today()) if v.id == vignette).body
    family = f"Pagetest{uuid.uuid4().hex[:6]}"
    body["patient"] |= {"family_name": family, "mrn": f"PG-{uuid.uuid4().hex[:8]}", "phone": "+1 555 0199"}
    body["notes"] = "Can only come on weekday mornings."
    intake_id = uuid.uuid4()
    event = IntakeSubmitted(
        intake_id=intake_id,
        patient_id=uuid.uuid4(),
        intake_version=1,
        submitted_at=dt.datetime.now(dt.UTC),
        intake=msgspec.convert(body, IntakeBody),
    )
    async with AsyncSession(engine) as session:
        await publish(session, event, subject=intake_id)
        await session.commit()
    return family


async def signed_in(
    browser: Browser,
    site: Site,
    role: str,
    destination: str | None = None,
    *,
    then: str = "/",
    name: str | None = None,
) -> Page:
    """A new browser signed in on the referral service as a new account of `role`, at `then`."""
    email, password = await make_user(site.settings, role, destination=destination, name=name)
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await page.goto(f"{site.referral}/sign-in?next={then}")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/sign-in" not in url)
    return page


@dataclass
class People:
    """Publishes intakes as the intake service announces them, and signs people in on the
    referral service, each in a browser of their own (the `people` fixture closes them all)."""

    browser: Browser
    site: Site
    engine: AsyncEngine
    pages: list[Page] = field(default_factory=list)

    async def intake(self, vignette: str) -> str:
        """An intake of the vignette; the patient's family name."""
        return await publish_intake(self.engine, vignette)

    async def at_referral(
        self, vignette: str, role: str, destination: str | None = None, **signing_in: Any
    ) -> tuple[str, Page, str]:
        """An intake of the vignette, and a new person of `role` who opened its referral from their
        worklist: the patient's family name, their page, and its URL."""
        family = await self.intake(vignette)
        page = await self.signed_in(role, destination, **signing_in)
        return family, page, await open_from_worklist(page, self.site, family)

    async def signed_in(
        self, role: str, destination: str | None = None, *, then: str = "/", name: str | None = None
    ) -> Page:
        page = await signed_in(self.browser, self.site, role, destination, then=then, name=name)
        self.pages.append(page)
        return page


@pytest.fixture
async def people(browser: Browser, site: Site, engine: AsyncEngine) -> AsyncIterator[People]:
    people = People(browser, site, engine)
    yield people
    for page in people.pages:
        await page.context.close()


async def open_from_worklist(page: Page, site: Site, family: str) -> str:
    """Wait for the referral on the worklist (triage runs in the background), found by the
    patient's family name as the person would search it (the shared test database holds many
    more referrals than a page), and open it."""
    link = page.get_by_role("link", name=re.compile(family))
    for _ in range(60):
        await page.goto(f"{site.referral}/worklist?patient={family}")
        if await link.count():
            break
        await page.wait_for_timeout(250)
    await link.click()
    await page.wait_for_url(re.compile(r"/referrals/[0-9a-f-]{36}$"))
    return page.url


async def test_a_specialist_works_a_referral_to_completed_and_its_follow_ups(
    people: People, site: Site
) -> None:
    family, page, url = await people.at_referral("P05", "specialist", "regenerative_medicine")
    status = page.locator("#referral-status")
    await expect(status).to_have_text("Requested")
    # The clinical picture and why it came here.
    await expect(page.get_by_role("heading", name=re.compile("Clinical picture"))).to_be_visible()
    await expect(page.get_by_text("+1 555 0199")).to_be_visible()
    await expect(page.get_by_text("Can only come on weekday mornings.")).to_be_visible()
    await expect(page.get_by_text(re.compile("Ruleset version v2"))).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "specialist-referral")

    await page.get_by_role("button", name="Accept").click()
    await expect(page.get_by_role("status")).to_have_text("Accepted.")
    await expect(status).to_have_text("Accepted")
    when = dt.date.today() + dt.timedelta(days=3)
    await page.get_by_label("Appointment date").fill(when.isoformat())
    await page.get_by_label("Time (clinic time)").fill("09:30")
    await page.get_by_role("button", name="Schedule the appointment").click()
    await expect(status).to_have_text("Scheduled")
    await expect(page.get_by_text(when.isoformat() + " 09:30")).to_be_visible()
    await page.get_by_role("button", name="Mark completed").click()
    await expect(status).to_have_text("Completed")
    # Regenerative medicine: the follow-ups appear; one is marked done from the page.
    done_buttons = page.get_by_role("button", name=re.compile(r"^Mark the .* follow-up done$"))
    count = await done_buttons.count()
    assert count >= 1
    await done_buttons.first.click()
    await expect(page.get_by_role("status")).to_have_text("Follow-up marked done.")
    await expect(done_buttons).to_have_count(count - 1)
    history = page.get_by_role("table", name="What happened to this referral")
    await expect(history).to_contain_text("Robin Specialist")
    await assert_accessible(page)
    await screenshot(page, "specialist-completed")

    # Another destination's specialist: a 404 page, nothing of the patient shown.
    other = await people.signed_in("specialist", "pain_management")
    response = await other.goto(url)
    assert response is not None and response.status == 404
    await expect(other.get_by_role("heading", name="Not found")).to_be_visible()
    assert family not in await other.content()


async def test_a_stale_button_shows_the_conflict_as_a_message(people: People, site: Site) -> None:
    _, first, url = await people.at_referral("P12", "specialist", "pain_management")
    second = await people.signed_in("specialist", "pain_management")
    await second.goto(url)
    await second.get_by_role("button", name="Accept").click()
    await expect(second.locator("#referral-status")).to_have_text("Accepted")
    # The first page still offers Decline: pressing it now is refused with the reason, no error page.
    await first.get_by_label("Reason to decline").fill("not ours")
    await first.get_by_role("button", name="Decline").click()
    alert = first.get_by_role("alert")
    await expect(alert).to_contain_text("That could not be done")
    await expect(alert).to_contain_text("accepted")
    await expect(first.locator("#referral-status")).to_have_text("Accepted")


async def test_a_front_desk_member_reads_but_sees_no_clinical_picture_and_cannot_act(
    people: People, site: Site
) -> None:
    family, specialist, url = await people.at_referral("P12", "specialist", "pain_management")
    await specialist.context.close()
    page = await people.signed_in("front_desk", then=url.removeprefix(site.referral))
    await expect(page.get_by_role("heading", name=re.compile(family))).to_be_visible()
    assert "weekday mornings" not in await page.content()
    await expect(page.get_by_role("button", name="Accept")).to_have_count(0)
    review = await page.goto(f"{site.referral}/review")
    assert review is not None and review.status == 403


async def test_a_clinician_resolves_a_held_case_onto_a_destinations_worklist(
    people: People, site: Site
) -> None:
    family = await people.intake("P24")
    clinician = await people.signed_in("clinician")
    row = clinician.get_by_role("row").filter(has_text=family)
    for _ in range(60):
        await clinician.goto(f"{site.referral}/review")
        if await row.count():
            break
        await clinician.wait_for_timeout(250)
    await expect(row).to_be_visible()
    await assert_accessible(clinician)
    await screenshot(clinician, "clinician-review-queue")
    await row.get_by_role("link").click()
    await clinician.get_by_label("Send to").select_option("pain_management")
    await clinician.get_by_label("Priority").select_option("urgent")
    await clinician.get_by_label("Note (optional)").fill("No red flag on review.")
    await clinician.get_by_role("button", name="Resolve the review").click()
    await expect(clinician.locator("#referral-status")).to_have_text("Requested")
    history = clinician.get_by_role("table", name="What happened to this referral")
    await expect(history.get_by_role("row").filter(has_text="No red flag on review.")).to_be_visible()

    specialist = await people.signed_in("specialist", "pain_management")
    await expect(specialist.get_by_role("row").filter(has_text=family)).to_contain_text("Urgent")


async def test_the_worklist_and_an_action_with_the_keyboard_alone(people: People, site: Site) -> None:
    family, page, _ = await people.at_referral("P12", "specialist", "pain_management")
    await page.goto(f"{site.referral}/worklist")
    await assert_accessible(page)
    await screenshot(page, "specialist-worklist")
    # The patient found with the search box (the shared database holds more than a page of
    # referrals), then the link reached with Tab and opened with Enter.
    await tab_to(page, page.get_by_label("Patient"))
    await page.keyboard.type(family)
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"patient="))
    link = page.get_by_role("link", name=re.compile(family))
    await tab_to(page, link)
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/referrals/"))
    accept = page.get_by_role("button", name="Accept")
    for _ in range(80):
        await page.keyboard.press("Tab")
        if await accept.evaluate("el => el === document.activeElement"):
            break
    await page.keyboard.press("Enter")
    await expect(page.locator("#referral-status")).to_have_text("Accepted")
    # Schedule: the date and time typed into their fields, the button pressed with Enter.
    when = dt.date.today() + dt.timedelta(days=2)
    await tab_to(page, page.get_by_label("Appointment date"))
    await page.keyboard.type(when.strftime("%m%d%Y"))  # en-US: month, day, year
    await tab_to(page, page.get_by_label("Time (clinic time)"))  # past the date picker's button
    await page.keyboard.type("0945AM")
    await tab_to(page, page.get_by_role("button", name="Schedule the appointment"))
    await page.keyboard.press("Enter")
    await expect(page.locator("#referral-status")).to_have_text("Scheduled")
    await expect(page.get_by_text(when.isoformat() + " 09:45")).to_be_visible()
    await tab_to(page, page.get_by_role("button", name="Mark completed"))
    await page.keyboard.press("Enter")
    await expect(page.locator("#referral-status")).to_have_text("Completed")


async def tab_to(page: Page, target: Locator, presses: int = 80) -> None:
    """Press Tab until `target` has the focus (as a keyboard user moves through the page)."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError("Tab never reached the control")


async def test_the_letter_is_printable(people: People, site: Site) -> None:
    _, page, _ = await people.at_referral("P12", "specialist", "pain_management")
    await page.get_by_role("link", name="Printable referral letter").click()
    await expect(page.get_by_role("heading", name="Referral to Pain management")).to_be_visible()
    await page.emulate_media(media="print")
    await expect(page.locator(".site-header")).to_be_hidden()
    await expect(page.get_by_text("Can only come on weekday mornings.")).to_be_visible()
    await assert_accessible(page)


async def _post(page: Page, url: str, form: dict[str, str]) -> int:
    """A form post from the signed-in page, with its form token (as the page's own forms)."""
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    response = await page.request.post(url, form={"_csrf": cookies["clinic_csrf"], **form}, max_redirects=0)
    return response.status


async def test_each_page_refuses_what_the_api_refuses(people: People, site: Site) -> None:
    _, own, url = await people.at_referral("P12", "specialist", "pain_management")
    other = await people.signed_in("specialist", "urgent_care")
    # Another destination's referral: 404 for reading and for every action.
    assert await _post(other, f"{url}/accept", {}) == 404
    assert await _post(other, f"{url}/cancel", {"reason": "x"}) == 404
    # A specialist does not resolve reviews nor read the review queue.
    assert await _post(own, f"{url}/resolve", {"destination": "urgent_care", "priority": "stat"}) == 403
    review = await own.goto(f"{site.referral}/review")
    assert review is not None and review.status == 403
    # A missing reason names the field; nothing changes.
    assert await _post(own, f"{url}/decline", {"reason": " "}) == 422
    await own.goto(url)
    await expect(own.locator("#referral-status")).to_have_text("Requested")
    # An unknown action is a 404 page.
    assert await _post(own, f"{url}/explode", {}) == 404
    # The front desk reads referrals but moves none.
    desk = await people.signed_in("front_desk", then="/worklist")
    assert await _post(desk, f"{url}/accept", {}) == 403
    for page in (own, other, desk):
        await page.context.close()


async def test_the_report_page_draws_its_charts_and_offers_the_same_figures_as_csv(
    people: People, site: Site
) -> None:
    _, specialist, _ = await people.at_referral("P12", "specialist", "pain_management")
    await specialist.get_by_role("button", name="Accept").click()
    await expect(specialist.locator("#referral-status")).to_have_text("Accepted")
    report = await specialist.goto(f"{site.referral}/report")
    assert report is not None and report.status == 403

    clinician = await people.signed_in("clinician", then="/report")
    charts = clinician.locator("svg.chart")
    await expect(charts).to_have_count(5)
    for name in (
        "Referrals created per day, by destination",
        "Referrals created per day, by priority",
        "Time from referral to acceptance",
        "Time from referral to scheduling",
        "Open referrals past their due time, by destination",
    ):
        await expect(clinician.get_by_role("img", name=name, exact=True)).to_be_visible()
    # Something drawn: at least today's pain-management bar and the accepted referral's bucket.
    assert await clinician.locator("#chart-destination rect.bar").count() >= 1
    assert await clinician.locator("#chart-acceptance rect.bar").count() >= 1
    total = int(await clinician.locator("#report-total").inner_text())
    assert total >= 1
    await assert_accessible(clinician)
    await screenshot(clinician, "clinician-report")

    async with clinician.expect_download() as download_info:
        await clinician.get_by_role("link", name="Download the figures (CSV)").click()
    download = await download_info.value
    rows = [line.split(",") for line in (await download.path()).read_text().splitlines()[1:]]
    by_destination = {k: int(v) for figure, k, v in rows if figure == "by_destination"}
    assert sum(by_destination.values()) == total
    assert by_destination["pain_management"] >= 1
    accepted = sum(
        int(v)
        for figure, _, v in rows
        if figure == "time_to_acceptance" and _ != "count" and "seconds" not in _
    )
    assert accepted >= 1


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        _Receiver.received.append({"headers": dict(self.headers), "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_an_admin_registers_a_webhook_endpoint_and_sees_a_delivery_arrive(
    people: People, site: Site
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        admin = await people.signed_in("admin", then="/admin/webhooks")
        url = f"http://127.0.0.1:{server.server_address[1]}/hook-{uuid.uuid4().hex[:6]}"
        await admin.get_by_label("URL").fill(url)
        await admin.get_by_label("Referral created").check()  # the vocabulary's words, not codes
        await admin.get_by_role("button", name="Register the endpoint").click()
        secret = await admin.locator("#new-secret").inner_text()
        assert secret.startswith("whsec_")
        await assert_accessible(admin)
        await admin.get_by_role("link", name="Open the endpoint").click()
        assert secret not in await admin.content()  # shown once only

        family = await people.intake("P12")
        await expect(admin.locator("main")).not_to_contain_text("referral.created")
        deliveries = admin.locator("#deliveries tbody tr").filter(has_text="Referral created")
        for _ in range(80):
            await admin.reload()
            if await deliveries.filter(has_text="succeeded").count():
                break
            await admin.wait_for_timeout(250)
        await expect(deliveries.filter(has_text="succeeded").first).to_be_visible()
        assert any(r["body"]["type"] == "referral.created" for r in _Receiver.received)
        assert family not in json.dumps(_Receiver.received)  # names never leave in a webhook
        await assert_accessible(admin)
        await screenshot(admin, "admin-webhook-endpoint")

        # Send one again; rotate the secret (shown once).
        count = len(_Receiver.received)
        await deliveries.first.get_by_role("button").click()
        await expect(admin.get_by_role("status")).to_have_text("Sending again.")
        for _ in range(80):
            if len(_Receiver.received) > count:
                break
            await admin.wait_for_timeout(250)
        assert len(_Receiver.received) > count
        await admin.get_by_role("button", name="Rotate the signing secret").click()
        rotated = await admin.locator("#new-secret").inner_text()
        assert rotated.startswith("whsec_") and rotated != secret
        # Removed: no more work for it (nor for the tests after this one).
        await admin.get_by_role("button", name="Remove this endpoint").click()
        await expect(admin.get_by_role("status")).to_have_text("The endpoint is removed.")
        await expect(admin.get_by_role("link", name=url)).to_have_count(0)

        # Staff and keys: a key shown once; a specialist account created.
        await admin.goto(f"{site.referral}/admin/people")
        await admin.get_by_label("Key name").fill(f"page-key-{uuid.uuid4().hex[:6]}")
        await admin.get_by_label("Key role").select_option("clinician")
        await admin.get_by_role("button", name="Create the key").click()
        assert (await admin.locator("#new-secret").inner_text()).startswith("clk_")
        email = f"new-{uuid.uuid4().hex[:6]}@clinic.example"
        await admin.get_by_label("Name", exact=True).fill("Sam Specialist")
        await admin.get_by_label("Email").fill(email)
        await admin.get_by_label("Role", exact=True).select_option("specialist")
        await admin.get_by_label("Destination (specialists)", exact=True).select_option("pain_management")
        await admin.get_by_role("button", name="Create the account").click()
        await expect(admin.get_by_role("status")).to_contain_text(email)
        account = admin.get_by_role("row").filter(has_text=email)
        await expect(account).to_contain_text("Specialist (Pain management)")
        await expect(admin.locator("main")).not_to_contain_text("pain_management")
        await admin.get_by_role("button", name=f"Disable {email}").click()
        await expect(admin.get_by_role("status")).to_contain_text("is disabled")
        await assert_accessible(admin)
        await admin.context.close()

        # Not for anyone else.
        clinician = await people.signed_in("clinician")
        for path in ("/admin/webhooks", "/admin/people"):
            response = await clinician.goto(f"{site.referral}{path}")
            assert response is not None and response.status == 403
        assert (
            await _post(clinician, f"{site.referral}/admin/people/create-key", {"name": "x", "role": "admin"})
            == 403
        )
        await clinician.context.close()
    finally:
        server.shutdown()


async def test_an_admin_replays_a_dead_letter_on_each_service(people: People, site: Site) -> None:
    family, admin, referral_url = await people.at_referral("P12", "admin", then="/worklist")
    # The triage consumer's delivery of that intake, as if its attempts had run out. The event is
    # found by its subject (the referral's intake), not by the patient in its payload: the upkeep
    # drops the form from handled events, and may already have (it made this test flaky): here
    # it has, whenever the upkeep would have run.
    await redact_handled(people.engine)
    async with people.engine.begin() as conn:
        delivery_id = (
            await conn.execute(
                text(
                    "INSERT INTO queue.deliveries (event_id, consumer, status, attempts, last_error) "
                    "SELECT e.id, 'referral.triage', 'dead', 8, 'database down' FROM queue.events e "
                    "JOIN referral.referrals r ON r.intake_id = e.subject "
                    "WHERE e.type = 'intake.submitted' AND r.id = CAST(:referral AS uuid) "
                    "RETURNING id"
                ),
                {"referral": referral_url.rsplit("/", 1)[-1]},
            )
        ).scalar_one()
    await admin.goto(f"{site.referral}/admin/dead")
    row = admin.locator("#dead-letters tbody tr").filter(has_text=str(delivery_id))
    await expect(row).to_contain_text("database down")
    await expect(row).to_contain_text("Triage of new and amended intakes")  # words, not codes
    await expect(row).to_contain_text("Intake submitted")
    await assert_accessible(admin)
    await screenshot(admin, "admin-dead-letters")
    # The intake service lists its own consumers' only.
    await admin.goto(f"{site.intake}/admin/dead")
    await expect(admin.locator("#dead-letters")).not_to_contain_text("Triage of new and amended intakes")
    await admin.goto(f"{site.referral}/admin/dead")
    await row.get_by_role("button").click()
    await expect(admin.get_by_role("status")).to_have_text(f"Delivery {delivery_id} queued again.")
    for _ in range(60):
        await admin.reload()
        if not await row.count():
            break
        await admin.wait_for_timeout(250)
    await expect(row).to_have_count(0)
    # Replayed once, triaged once: still one referral for the patient.
    await admin.goto(f"{site.referral}/referrals?status=all&patient={family}")
    await expect(admin.get_by_role("link", name=re.compile(family))).to_have_count(1)


async def test_the_worklist_finds_a_patient_by_name_or_mrn_and_pages_through_the_rest(
    people: People, site: Site
) -> None:
    """More referrals than a page: the first page, then "Next page" to the rest; the Patient box
    finds them by the start of the family name or by MRN."""
    family = f"Paged{uuid.uuid4().hex[:6]}"
    now = dt.datetime.now(dt.UTC)
    async with AsyncSession(people.engine) as session:
        session.add_all(
            Referral(
                intake_id=uuid.uuid4(),
                intake_version=1,
                patient={"family_name": f"{family}{i:02d}", "given_name": "Pat", "mrn": f"{family}-{i}"},
                destination="pain_management",
                priority="routine",
                priority_rank=PRIORITY_RANK["routine"],
                status="completed",
                reasons=[],
                ruleset_version="v2",
                created_at=now,
                updated_at=now,
                due_by=now + dt.timedelta(minutes=i),
            )
            for i in range(WORKLIST_PAGE + 3)
        )
        await session.commit()
    page = await people.signed_in("clinician", then="/referrals?status=all")
    await page.get_by_label("Patient").fill(family.lower())  # the start of the name, any case
    await page.get_by_label("Patient").press("Enter")
    rows = page.locator("#worklist-table tbody tr")
    await expect(rows).to_have_count(WORKLIST_PAGE)
    await expect(rows.first).to_contain_text(f"{family}00")  # soonest due first
    await page.get_by_role("link", name="Next page").click()
    await expect(rows).to_have_count(3)
    await expect(rows.first).to_contain_text(f"{family}{WORKLIST_PAGE:02d}")
    await expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    await expect(page.get_by_label("Patient")).to_have_value(family.lower())  # the search is kept
    # An MRN finds exactly its patient.
    await page.goto(f"{site.referral}/referrals?status=all&patient={family}-7")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(f"{family}07")
    # A cursor this page did not give starts from the top instead of an error page.
    await page.goto(f"{site.referral}/referrals?status=all&patient={family}&after=garbage")
    await expect(rows).to_have_count(WORKLIST_PAGE)
    await assert_accessible(page)


async def test_an_admin_finds_their_own_read_of_a_patient_in_the_access_audit(
    people: People, site: Site
) -> None:
    """Opening a referral is recorded; the admin finds that read by the patient's MRN (resolved to
    the patient's id), by the patient's id, by their own name and by time; other roles get the
    same refusal as the other admin pages."""
    family = await people.intake("P12")
    name = f"Ada Audit{uuid.uuid4().hex[:6]}"
    admin = await people.signed_in("admin", then="/worklist", name=name)
    url = await open_from_worklist(admin, site, family)
    referral_id = url.rsplit("/", 1)[1]
    async with AsyncSession(people.engine) as session:
        patient = (
            await session.execute(
                text("SELECT patient FROM referral.referrals WHERE id = :id"), {"id": referral_id}
            )
        ).scalar_one()
    await admin.get_by_role("link", name="Access audit").click()
    await expect(admin.get_by_role("heading", name="Access audit of the referral service")).to_be_visible()
    read = admin.locator("#audit tbody tr").filter(has_text=referral_id).filter(has_text=name)

    await admin.get_by_label("Patient (id or MRN)").fill(patient["mrn"])
    await admin.get_by_role("button", name="Search").click()
    await expect(read.first).to_be_visible()
    await expect(admin.get_by_text(f"MRN {patient['mrn']} is patient")).to_contain_text(patient["patient_id"])
    await assert_accessible(admin)
    await screenshot(admin, "admin-access-audit")
    # Every row found names the patient; the patient's id link searches by that id.
    await read.first.get_by_role("link", name=patient["patient_id"]).click()
    await expect(admin.get_by_label("Patient (id or MRN)")).to_have_value(patient["patient_id"])
    await expect(read.first).to_be_visible()

    # By their own name alone, newest first: their latest request (the search) comes first.
    await admin.goto(f"{site.referral}/admin/audit")
    await admin.get_by_label("Who (name or id)").fill(name)
    await admin.get_by_label("Who (name or id)").press("Enter")
    await expect(read.first).to_be_visible()
    rows = admin.locator("#audit tbody tr")
    assert await rows.count() == await rows.filter(has_text=name).count()
    first_at = await rows.nth(0).locator("td").first.inner_text()
    last_at = await rows.nth(await rows.count() - 1).locator("td").first.inner_text()
    assert first_at >= last_at

    # By time (UTC): an hour around now finds it; a range that ended an hour ago does not.
    now = dt.datetime.now(dt.UTC)
    stamp = "%Y-%m-%dT%H:%M"
    await admin.get_by_label("From (UTC)").fill((now - dt.timedelta(hours=1)).strftime(stamp))
    await admin.get_by_label("Until (UTC)").fill((now + dt.timedelta(hours=1)).strftime(stamp))
    await admin.get_by_role("button", name="Search").click()
    await expect(read.first).to_be_visible()
    await admin.get_by_label("From (UTC)").fill((now - dt.timedelta(hours=3)).strftime(stamp))
    await admin.get_by_label("Until (UTC)").fill((now - dt.timedelta(hours=1)).strftime(stamp))
    await admin.get_by_role("button", name="Search").click()
    await expect(admin.locator("#audit tbody")).to_have_text("No access matches.")
    # A date that is not one, and a range the wrong way round: each named, no error page.
    response = await admin.goto(f"{site.referral}/admin/audit?since=soon&until=2020-01-01T00:00")
    assert response is not None and response.status == 422
    await expect(admin.get_by_role("alert")).to_contain_text("From (UTC)")
    await expect(admin.get_by_role("link", name=re.compile("^Until"))).to_have_count(0)
    response = await admin.goto(
        f"{site.referral}/admin/audit?since=2021-01-01T00:00&until=2020-01-01T00:00&cursor=bad"
    )
    assert response is not None and response.status == 422
    await expect(admin.get_by_role("alert")).to_contain_text("Until (UTC): Must be later")
    # An MRN nobody has; a cursor this page did not give starts from the top.
    await admin.goto(f"{site.referral}/admin/audit?patient=NO-SUCH-MRN")
    await expect(admin.get_by_role("status")).to_contain_text("No patient on this service has the MRN")
    response = await admin.goto(f"{site.referral}/admin/audit?actor={name}&cursor=garbage")
    assert response is not None and response.status == 200
    await expect(read.first).to_be_visible()
    # The intake service shows its own rows: the referral read is not among them.
    await admin.goto(f"{site.intake}/admin/audit?actor={name}")
    await expect(admin.get_by_role("heading", name="Access audit of the intake service")).to_be_visible()
    await expect(admin.locator("#audit")).not_to_contain_text(referral_id)
    await assert_accessible(admin)
    await admin.context.close()

    # Admin only, on both services, as the other admin pages.
    for role, destination in (("clinician", None), ("specialist", "pain_management"), ("front_desk", None)):
        other = await people.signed_in(role, destination)
        await expect(other.get_by_role("link", name="Access audit")).to_have_count(0)
        for base in (site.referral, site.intake):
            response = await other.goto(f"{base}/admin/audit?patient={patient['patient_id']}")
            assert response is not None and response.status == 403, (role, base)
            assert referral_id not in await other.content()
        await other.context.close()


async def test_the_brand_link_takes_each_person_to_their_own_first_page(people: People, site: Site) -> None:
    _, specialist, _ = await people.at_referral("P12", "specialist", "pain_management")
    await specialist.get_by_role("link", name="Back-pain clinic").click()
    await specialist.wait_for_url(f"{site.referral}/worklist")
    await expect(specialist.get_by_role("heading", level=1)).to_contain_text("Worklist")
    # The intake service's home is the front desk's: a specialist landing there (signing in
    # there, a bookmark) is sent on to their worklist, not shown a refusal.
    response = await specialist.goto(f"{site.intake}/")
    assert response is not None and response.status == 200
    assert specialist.url == f"{site.referral}/worklist"
    await specialist.context.close()

    clinician = await people.signed_in("clinician", then="/report")
    await clinician.get_by_role("link", name="Back-pain clinic").click()
    await clinician.wait_for_url(f"{site.referral}/review")
    await clinician.context.close()
    desk = await people.signed_in("front_desk", then="/worklist")
    await desk.get_by_role("link", name="Back-pain clinic").click()
    await desk.wait_for_url(f"{site.intake}/")
