"""Browser fixtures: both services served for real (uvicorn on free ports, their workers
running, the real queue between them) and Debian's chromium driven by Playwright.

The intake service runs on a clock that follows the real time until a test moves it forward
(session expiry); the referral service on the system clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access import accounts, passwords
from services.common.db.engine import create_engine
from services.common.settings import Settings
from services.intake.app import create_app as intake_app
from services.referral.app import create_app as referral_app
from tests.conftest import REPO_ROOT
from tests.foundation.test_clinic_up import free_port

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
PASSWORD = "a long walk by the river"


class DriftingClock:
    """The real time plus an offset a test can add to (to let a session go idle)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not allowed outside the main thread
        pass


def _serve(app: Any, port: int) -> tuple[_Server, threading.Thread]:
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    return server, thread


@dataclass(frozen=True)
class Site:
    intake: str
    referral: str
    clock: DriftingClock
    settings: Settings


@pytest.fixture(scope="module")
def site(settings: Settings) -> Iterator[Site]:
    """Per test module: its workers must stop before other tests' own consumers run against the
    same database (they would compete for the same events)."""
    intake_port, referral_port = free_port(), free_port()
    settings = dataclasses.replace(settings, intake_port=intake_port, referral_port=referral_port)
    clock = DriftingClock()
    servers = [
        _serve(intake_app(settings, run_workers=True, clock=clock), intake_port),  # type: ignore[arg-type]
        _serve(referral_app(settings, run_workers=True), referral_port),
    ]
    try:
        yield Site(f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{referral_port}", clock, settings)
    finally:
        for server, _ in servers:
            server.should_exit = True
        for _, thread in servers:
            thread.join(timeout=20)


async def make_user(
    settings: Settings,
    role: str = "front_desk",
    *,
    change_password: bool = True,
    destination: str | None = None,
    name: str | None = None,
) -> tuple[str, str]:
    """An account as `clinic users create` makes it (named `name`, else "Robin <Role>"); returns
    (email, password). With `change_password` the first-sign-in change is already done (to
    PASSWORD)."""
    engine = create_engine(settings.database_url or "", null_pool=True)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            email = f"{role}-{uuid.uuid4().hex[:8]}@clinic.example"
            temporary, user = await accounts.create_user(
                session,
                role=role,
                name=name or f"Robin {role.replace('_', ' ').title()}",
                email=email,
                destination=destination,
                now=dt.datetime.now(dt.UTC),
            )
            if change_password:
                user.password_hash = passwords.HASHER.hash(PASSWORD)
                user.must_change_password = False
            await session.commit()
            return email, PASSWORD if change_password else temporary
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    yield page
    await context.close()


async def sign_in(page: Page, site: Site, email: str, password: str = PASSWORD) -> None:
    await page.goto(f"{site.intake}/")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


@pytest.fixture
async def front_desk(page: Page, site: Site) -> Page:
    """A page signed in as a front-desk member."""
    email, _ = await make_user(site.settings)
    await sign_in(page, site, email)
    await page.wait_for_url(f"{site.intake}/")
    return page


_AXE = Axe()


async def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    results = await _AXE.run(page)
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
    assert not bad, "\n".join(bad)


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
