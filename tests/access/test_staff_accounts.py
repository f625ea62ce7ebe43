"""Staff accounts: `clinic users ...`, the password rules, sessions and their timeouts, the
throttle, and the append-only record of sign-ins."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access import accounts, passwords, staff_sessions
from services.common.settings import Settings
from tests.conftest import clinic_on

T0 = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
HERE = staff_sessions.Attempt(client_address="10.0.0.7", request_id="req-1", at=T0)


def clinic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`clinic users ARGS...`"""
    return clinic_on(database_url, "users", *args)


def new_email() -> str:
    return f"staff-{uuid.uuid4().hex[:8]}@clinic.example"


async def test_clinic_users_create_list_reset_disable(
    database_url: str, settings: Settings, engine: AsyncEngine
) -> None:
    email = new_email()
    made = clinic(database_url, "create", "--role", "front_desk", "--name", "Kim Desk", "--email", email)
    assert made.returncode == 0, made.stderr
    temporary = made.stdout.strip()
    assert len(made.stdout.splitlines()) == 1 and len(temporary) >= 12
    listed = clinic(database_url, "list")
    assert f"{email}\tKim Desk\tfront_desk\t\tmust change password" in listed.stdout
    again = clinic(database_url, "create", "--role", "front_desk", "--name", "Kim", "--email", email.upper())
    assert again.returncode == 2 and "already exists" in again.stderr
    specialist = clinic(
        database_url, "create", "--role", "specialist", "--name", "Dr", "--email", new_email()
    )
    assert specialist.returncode == 2 and "destination" in specialist.stderr

    async with AsyncSession(engine) as session:
        token = await staff_sessions.sign_in(session, email, temporary, HERE, settings)
        await session.commit()
        staff = await staff_sessions.staff_for_token(session, token, T0, settings)
        assert staff is not None and staff.must_change_password
    reset = clinic(database_url, "reset", email)
    assert reset.returncode == 0 and reset.stdout.strip() != temporary
    async with AsyncSession(engine) as session:
        # A reset ends the account's sessions.
        assert await staff_sessions.staff_for_token(session, token, T0, settings) is None
        with pytest.raises(staff_sessions.SignInRefused):
            await staff_sessions.sign_in(session, email, temporary, HERE, settings)
        token = await staff_sessions.sign_in(session, email, reset.stdout.strip(), HERE, settings)
        await session.commit()
    disabled = clinic(database_url, "disable", email)
    assert disabled.returncode == 0
    async with AsyncSession(engine) as session:
        assert await staff_sessions.staff_for_token(session, token, T0, settings) is None
        with pytest.raises(staff_sessions.SignInRefused):
            await staff_sessions.sign_in(session, email, reset.stdout.strip(), HERE, settings)
        await session.commit()
    assert "disabled" in clinic(database_url, "list").stdout
    assert clinic(database_url, "disable", new_email()).returncode == 2


@pytest.mark.parametrize(
    ("password", "refused"),
    [
        ("short", True),
        ("password1234", True),
        ("PASSWORD1234", True),
        ("aaaaaaaaaaaaaaaa", True),
        ("a long walk by the river", False),
    ],
)
def test_password_rules(password: str, refused: bool) -> None:
    assert (passwords.password_problem(password) is not None) is refused


async def _account(engine: AsyncEngine) -> tuple[str, str]:
    """A new front-desk account: its email and temporary password."""
    email = new_email()
    async with AsyncSession(engine) as session:
        temporary, _ = await accounts.create_user(
            session, role="front_desk", name="Sam", email=email, destination=None, now=T0
        )
        await session.commit()
    return email, temporary


async def test_sessions_end_when_idle_and_at_their_absolute_limit(
    settings: Settings, engine: AsyncEngine
) -> None:
    email, password = await _account(engine)
    async with AsyncSession(engine) as session:
        token = await staff_sessions.sign_in(session, email, password, HERE, settings)
        await session.commit()
        now = T0
        # Active use keeps it open up to the absolute limit...
        while now < T0 + dt.timedelta(hours=settings.session_max_hours) - dt.timedelta(minutes=10):
            now += dt.timedelta(minutes=settings.session_idle_minutes - 1)
            assert await staff_sessions.staff_for_token(session, token, now, settings) is not None
            await session.commit()
        # ...and not beyond it.
        assert (
            await staff_sessions.staff_for_token(
                session, token, T0 + dt.timedelta(hours=settings.session_max_hours), settings
            )
            is None
        )
        token = await staff_sessions.sign_in(session, email, password, HERE, settings)
        await session.commit()
        # A page's background refresh does not count as use.
        soon = T0 + dt.timedelta(minutes=settings.session_idle_minutes - 1)
        assert await staff_sessions.staff_for_token(session, token, soon, settings, touch=False) is not None
        idle = T0 + dt.timedelta(minutes=settings.session_idle_minutes, seconds=1)
        assert await staff_sessions.staff_for_token(session, token, idle, settings) is None


async def test_failures_are_throttled_per_account_and_per_address(
    settings: Settings, engine: AsyncEngine
) -> None:
    email, password = await _account(engine)
    async with AsyncSession(engine) as session:
        for _ in range(staff_sessions.MAX_FAILURES_PER_ACCOUNT):
            with pytest.raises(staff_sessions.SignInRefused, match="not right"):
                await staff_sessions.sign_in(session, email, "wrong wrong wrong", HERE, settings)
        with pytest.raises(staff_sessions.SignInRefused, match="Too many"):
            await staff_sessions.sign_in(session, email, password, HERE, settings)
        # Later, the window has passed.
        later = dataclasses.replace(HERE, at=T0 + staff_sessions.THROTTLE_WINDOW + dt.timedelta(minutes=1))
        assert await staff_sessions.sign_in(session, email, password, later, settings)
        await session.commit()

        address = dataclasses.replace(HERE, client_address=f"10.9.{uuid.uuid4().int % 250}.1")
        for _ in range(staff_sessions.MAX_FAILURES_PER_ADDRESS):
            with pytest.raises(staff_sessions.SignInRefused):
                await staff_sessions.sign_in(session, new_email(), "guess guess guess", address, settings)
        with pytest.raises(staff_sessions.SignInRefused, match="Too many"):
            await staff_sessions.sign_in(session, email, password, address, settings)
        await session.commit()


async def test_sign_in_events_are_recorded_and_append_only(settings: Settings, engine: AsyncEngine) -> None:
    email, password = await _account(engine)
    async with AsyncSession(engine) as session:
        with pytest.raises(staff_sessions.SignInRefused):
            await staff_sessions.sign_in(session, email, "not it at all", HERE, settings)
        token = await staff_sessions.sign_in(session, email, password, HERE, settings)
        staff = await staff_sessions.staff_for_token(session, token, T0, settings)
        assert staff is not None
        await staff_sessions.change_password(session, staff, password, "a long walk by the river", HERE)
        await staff_sessions.sign_out(session, staff, HERE)
        await session.commit()
        assert await staff_sessions.staff_for_token(session, token, T0, settings) is None
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT action, outcome, client_address, request_id FROM access.sign_in_events "
                    "WHERE email = :e ORDER BY id"
                ),
                {"e": email},
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("sign_in", "bad_password", "10.0.0.7", "req-1"),
        ("sign_in", "ok", "10.0.0.7", "req-1"),
        ("password_change", "ok", "10.0.0.7", "req-1"),
        ("sign_out", "ok", "10.0.0.7", "req-1"),
    ]
    async with engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT action, outcome, actor_kind, request_id FROM access.audit_events "
                    "WHERE actor_name = :e ORDER BY at, action"
                ),
                {"e": email},
            )
        ).all()
    assert sorted(tuple(r) for r in audited) == sorted(
        [
            ("staff.sign_in", "denied", "account", "req-1"),
            ("staff.sign_in", "ok", "account", "req-1"),
            ("staff.password_change", "ok", "account", "req-1"),
            ("staff.sign_out", "ok", "account", "req-1"),
        ]
    )
    async with engine.connect() as conn:
        with pytest.raises(DBAPIError, match="append-only"):
            await conn.execute(text("DELETE FROM access.sign_in_events WHERE email = :e"), {"e": email})
