"""Fault 6: a slow database: a lock held on a table a request needs (a long migration, a stuck
transaction). Requests give up after the statement timeout with a retryable problem."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import asyncpg
import httpx
import pytest

from tests.reliability.harness import CLIENT_TIMEOUT, clinic, intake_body, report, sql

pytestmark = pytest.mark.reliability

TIMEOUT_SECONDS = 2


@contextmanager
def table_locked(dsn: str, table: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on `table` (from another connection) until the block ends."""
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                while not release.is_set():
                    await asyncio.sleep(0.05)
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(hold(),), daemon=True)
    thread.start()
    assert locked.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def test_a_request_stuck_behind_a_lock_answers_503_within_the_statement_timeout(
    fresh_database: str,
) -> None:
    with clinic(
        database_url=fresh_database, CLINIC_DB_STATEMENT_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS)
    ) as system:
        system.start()
        dsn = system.dsn()
        client = httpx.Client(timeout=CLIENT_TIMEOUT, headers=system.headers)

        def post(mrn: str) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            resp = client.post(
                f"{system.intake}/v1/intakes", json=intake_body(mrn), headers={"Idempotency-Key": mrn}
            )
            return resp, time.monotonic() - started

        def get(path: str) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            return client.get(f"{system.intake}{path}"), time.monotonic() - started

        answers: list[tuple[httpx.Response, float]] = []
        with ThreadPoolExecutor(4) as pool:
            # The intake table: submissions and the list wait on it.
            with table_locked(dsn, "intake.intakes"):
                answers += pool.map(post, [f"SLOW-{i}" for i in range(3)])
                answers += [get("/v1/intakes?limit=5")]
            # The key table: the auth middleware waits on it, before any handler runs.
            with table_locked(dsn, "access.api_keys"):
                answers += pool.map(post, ["SLOW-AUTH"])
        try:
            for resp, elapsed in answers:
                assert resp.status_code == 503, resp.text
                assert resp.headers["content-type"] == "application/problem+json"
                assert int(resp.headers["retry-after"]) > 0
                assert resp.json()["status"] == 503
                assert elapsed < CLIENT_TIMEOUT  # answered, not hung
            # Nothing was stored for the refused submissions; once the lock is gone they succeed.
            assert sql(dsn, "SELECT count(*) FROM intake.patients WHERE mrn LIKE 'SLOW-%'")[0][0] == 0
            assert post("SLOW-0")[0].status_code == 201
            assert system.tracebacks() == []
            assert all(e["level"] == "warning" for e in system.events("database_unavailable"))
            assert system.stop() == 0
            assert system.left_behind() == []
        finally:
            client.close()
    report(
        "a lock held on a table a request needs",
        statement_timeout_s=TIMEOUT_SECONDS,
        answers=[r.status_code for r, _ in answers],
        slowest_answer_s=round(max(e for _, e in answers), 2),
    )
