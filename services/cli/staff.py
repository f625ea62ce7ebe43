"""`clinic users create|list|disable|reset`: staff accounts for the pages.

`create` and `reset` print a temporary password alone on stdout; it works for one sign-in, at
which the person must choose their own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access import accounts
from services.common.access.auth import Destination, Role


def register(sub: Any) -> None:
    users = sub.add_parser("users", help="staff accounts: create, list, disable, reset")
    commands = users.add_subparsers(dest="users_command", required=True)

    create = commands.add_parser("create", help="create an account; prints a temporary password")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--destination", choices=[d.value for d in Destination], help="specialists only")
    create.add_argument("--name", required=True)
    create.add_argument("--email", required=True)
    create.set_defaults(fn=cmd_users_create)

    commands.add_parser("list", help="every account, oldest first").set_defaults(fn=cmd_users_list)

    disable = commands.add_parser("disable", help="disable an account and end its sessions")
    disable.add_argument("email")
    disable.set_defaults(fn=cmd_users_disable)

    reset = commands.add_parser("reset", help="a new temporary password; ends the account's sessions")
    reset.add_argument("email")
    reset.set_defaults(fn=cmd_users_reset)


def _run(work: Callable[[AsyncSession, dt.datetime], Awaitable[Any]], command: str) -> tuple[int, Any]:
    from services.cli.common import run_async, with_engine

    async def body(engine: AsyncEngine) -> Any:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            result = await work(session, dt.datetime.now(dt.UTC))
            await session.commit()
            return result

    try:
        return 0, run_async(lambda s: with_engine(s, body))
    except accounts.AccountError as exc:
        print(f"clinic users {command}: {exc}", file=sys.stderr)
        return 2, None


def cmd_users_create(args: argparse.Namespace) -> int:
    async def work(session: AsyncSession, now: dt.datetime) -> str:
        password, _ = await accounts.create_user(
            session, role=args.role, name=args.name, email=args.email, destination=args.destination, now=now
        )
        return password

    code, password = _run(work, "create")
    if code == 0:
        print(password)
        print(
            f"account created for {args.email}; the password above must be changed at the first sign-in",
            file=sys.stderr,
        )
    return code


def cmd_users_list(_: argparse.Namespace) -> int:
    async def work(session: AsyncSession, now: dt.datetime) -> list[str]:
        lines = ["email\tname\trole\tdestination\tstate\tcreated_at"]
        for u in await accounts.list_users(session):
            state = (
                "disabled"
                if u.disabled_at
                else ("must change password" if u.must_change_password else "active")
            )
            created = u.created_at.isoformat(timespec="seconds")
            lines.append(f"{u.email}\t{u.name}\t{u.role}\t{u.destination or ''}\t{state}\t{created}")
        return lines

    code, lines = _run(work, "list")
    if code == 0:
        print("\n".join(lines))
    return code


def cmd_users_disable(args: argparse.Namespace) -> int:
    async def work(session: AsyncSession, now: dt.datetime) -> None:
        await accounts.disable_user(session, args.email, now)

    code, _ = _run(work, "disable")
    if code == 0:
        print(f"{args.email} disabled; every session of the account has ended", file=sys.stderr)
    return code


def cmd_users_reset(args: argparse.Namespace) -> int:
    async def work(session: AsyncSession, now: dt.datetime) -> str:
        password, _ = await accounts.reset_user(session, args.email, now)
        return password

    code, password = _run(work, "reset")
    if code == 0:
        print(password)
    return code
