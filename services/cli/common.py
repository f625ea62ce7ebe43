"""What the command modules share: the services' names, running a coroutine with settings and
logging set up, an engine for one command, and waiting for a database `clinic up` is preparing."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from services.common.settings import Settings, get_settings

SERVICES = ("intake", "referral")
#: How long `clinic up` waits for each service to say it is ready (a first start on a busy machine
#: compiles and migrates for a while).
READY_SECONDS = 180


def service_module(name: str) -> Any:
    if name == "intake":
        from services.intake import app as intake_app

        return intake_app
    from services.referral import app as referral_app

    return referral_app


def port_of(settings: Settings, name: str) -> int:
    return settings.intake_port if name == "intake" else settings.referral_port


def run_async(fn: Callable[[Settings], Any]) -> Any:
    from services.common.logging import configure_logging

    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    return asyncio.run(fn(settings))


async def with_engine(settings: Settings, body: Callable[[Any], Any]) -> Any:
    from services.common.db.engine import create_engine, resolve_database_url

    engine = create_engine(resolve_database_url(settings), null_pool=True)
    try:
        return await body(engine)
    finally:
        await engine.dispose()


#: How long key commands wait for a database that `clinic up` (or `clinic migrate`) is preparing.
KEYS_WAIT_SECONDS = 60.0


class NotReady(Exception):
    """The database did not answer, or stayed behind its migrations, for KEYS_WAIT_SECONDS."""


async def with_migrated_engine(settings: Settings, body: Callable[[Any], Any]) -> Any:
    """`body(engine)` once the database answers and its migrations are at head: right after
    `clinic up &` they may still be running. Waits, it never migrates (that is `clinic up`'s and
    `clinic migrate`'s job, under their lock)."""
    from services.common.db.migrate import wait_until_at_head

    def tell(why: str) -> None:
        print(
            f"clinic keys: waiting up to {KEYS_WAIT_SECONDS:.0f} s for the database: {why}",
            file=sys.stderr,
            flush=True,
        )

    async def waited(engine: Any) -> Any:
        try:
            await wait_until_at_head(engine, KEYS_WAIT_SECONDS, tell)
        except TimeoutError as exc:
            raise NotReady(str(exc)) from None
        return await body(engine)

    return await with_engine(settings, waited)


def not_ready(command: str, exc: NotReady) -> int:
    print(
        f"clinic {command}: gave up after {KEYS_WAIT_SECONDS:.0f} s, {exc}; "
        "start `clinic up` or run `clinic migrate`",
        file=sys.stderr,
    )
    return 1
