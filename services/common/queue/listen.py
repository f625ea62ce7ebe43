"""A consumer's wake-up: one LISTEN connection on its NOTIFY channel, re-established when lost
(a warning is logged), setting an event the worker waits on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import asyncpg
import structlog

from services.common.clock import first_of as _first_of
from services.common.db.engine import libpq_url

if TYPE_CHECKING:
    from services.common.queue.consumer import QueueTuning

log = structlog.get_logger(__name__)

#: The listening connection's application_name (prefix), so operators can tell it apart.
LISTENER_NAME = "clinic-queue-listener"


async def listen(
    database_url: str,
    channel: str,
    application_name: str,
    wake: asyncio.Event,
    stop: asyncio.Event,
    tuning: QueueTuning,
    *,
    on_change: Callable[[bool], None] = lambda _: None,
    log: structlog.typing.FilteringBoundLogger = log,
) -> None:
    """Until `stop`: LISTEN on `channel` on a dedicated connection (never a pooled one) and set
    `wake` on every notification (and once on each (re)connect, to catch up on anything sent while
    not listening); reconnect with backoff when the connection drops, saying so in the log (a
    warning when it is lost, info when it is back). `on_change(listening)`."""
    delay = tuning.reconnect_seconds
    reconnecting = False
    while not stop.is_set():
        conn: asyncpg.Connection | None = None
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(
                libpq_url(database_url),
                timeout=10,
                server_settings={"application_name": application_name[:63]},
            )
            conn.add_termination_listener(_setter(lost))
            await conn.add_listener(channel, _setter(wake))
            on_change(True)
            if reconnecting:
                log.info("queue_listener_reconnected", channel=channel)
                reconnecting = False
            delay = tuning.reconnect_seconds
            wake.set()
            while not stop.is_set() and not lost.is_set():
                await _first_of(tuning.poll_seconds * 5, stop, lost)
                if not stop.is_set() and not lost.is_set():
                    await conn.execute("SELECT 1", timeout=5)  # notice a silent drop
            if lost.is_set() and not stop.is_set():
                # Terminated by the server (a restart, pg_terminate_backend): polling covers the
                # gap until the reconnect below.
                log.warning("queue_listener_lost", channel=channel, error_type="ConnectionTerminated")
                reconnecting = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("queue_listener_lost", channel=channel, error_type=type(exc).__name__)
            reconnecting = True
        finally:
            on_change(False)
            if conn is not None and not conn.is_closed():
                conn.terminate()
        if not stop.is_set():
            await _first_of(delay, stop)
            delay = min(delay * 2, tuning.reconnect_max_seconds)


def _setter(event: asyncio.Event) -> Callable[..., None]:
    """A callback (for asyncpg's listeners) that sets `event`, whatever it is called with."""
    return lambda *_: event.set()
