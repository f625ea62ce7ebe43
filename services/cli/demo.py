"""`clinic demo`: submit the public vignettes through the HTTP API and show where each went.

Uses a running `clinic up` when the two services answer; otherwise starts one for the demo and
stops it afterwards (unless the URLs were given: then it says they do not answer). It works with
a key of its own (`demo-<random>`), revoked when the demo ends, whatever the outcome.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from services.cli.run import is_ready, wait_until_ready
from services.common.clock import clinic_today
from services.common.settings import get_settings
from services.vignettes import load_vignettes


class DemoError(Exception):
    """Why the demo cannot go on, in one line for the operator."""


def _keys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "keys", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@contextmanager
def _demo_key() -> Iterator[str]:
    """An admin key for the demo alone, revoked when the demo ends (it reads every referral)."""
    name = f"demo-{uuid.uuid4().hex[:8]}"
    created = _keys("create", "--role", "admin", "--name", name)
    if created.returncode != 0 or not created.stdout.strip():
        last = (created.stderr.strip().splitlines() or ["no key printed"])[-1]
        raise DemoError(f"could not make a key: {last}")
    try:
        yield created.stdout.strip()
    finally:
        _keys("revoke", "--name", name)


def _routed(
    client: httpx.Client, referral_url: str, headers: dict[str, str], intake_id: str
) -> dict[str, Any] | None:
    response = client.get(f"{referral_url}/v1/referrals", params={"intake_id": intake_id}, headers=headers)
    response.raise_for_status()
    items = [r for r in response.json()["items"] if r["superseded_by"] is None]
    return items[0] if items else None


def run_demo(intake_url: str, referral_url: str, timeout: float) -> int:
    with _demo_key() as key, httpx.Client(timeout=15) as client:
        headers = {"Authorization": f"Bearer {key}"}
        today = clinic_today(dt.datetime.now(dt.UTC), get_settings().clinic_time_zone)
        submitted: list[tuple[Any, str]] = []
        for vignette in load_vignettes(today):
            response = client.post(f"{intake_url}/v1/intakes", json=vignette.body, headers=headers)
            if response.status_code != 201:
                print(
                    f"{vignette.id}: intake refused ({response.status_code}): {response.text}",
                    file=sys.stderr,
                )
                return 1
            submitted.append((vignette, response.json()["id"]))
        rows: list[tuple[str, str, str, str, str]] = []
        deadline = time.monotonic() + timeout
        for vignette, intake_id in submitted:
            referral = None
            while referral is None and time.monotonic() < deadline:
                referral = _routed(client, referral_url, headers, intake_id)
                if referral is None:
                    time.sleep(0.2)
            if referral is None:
                rows.append((vignette.id, "(not routed in time)", "", "", "✗"))
                continue
            expected = vignette.expect
            codes = [r["code"] for r in referral["reasons"]]
            ok = (
                referral["destination"] == expected.destination
                and referral["priority"] == expected.priority
                and codes[:1] == list(expected.reason_codes[:1])
                and set(expected.reason_codes) <= set(codes)
            )
            rows.append(
                (
                    vignette.id,
                    referral["destination"],
                    referral["priority"],
                    referral["reasons"][0]["code"],
                    "✓" if ok else "✗ expected " + f"{expected.destination}/{expected.priority}",
                )
            )
    header = ("case", "destination", "priority", "deciding reason", "as expected")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0 if all(r[4] == "✓" for r in rows) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    settings = get_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    intake_url = args.intake_url or f"http://{host}:{settings.intake_port}"
    referral_url = args.referral_url or f"http://{host}:{settings.referral_port}"
    up: subprocess.Popen[bytes] | None = None
    try:
        if not (is_ready(intake_url) and is_ready(referral_url)):
            if args.intake_url or args.referral_url:
                raise DemoError(
                    f"the services do not answer at {intake_url} and {referral_url} "
                    "(is `clinic up` running there?)"
                )
            print("the services are not running: starting `clinic up` for the demo", file=sys.stderr)
            up = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], env=dict(os.environ))
            if not wait_until_ready([intake_url, referral_url], time.monotonic() + 90, [up]):
                raise DemoError("`clinic up` did not become ready (its lines above say why)")
        return run_demo(intake_url, referral_url, args.timeout)
    except DemoError as exc:
        print(f"clinic demo: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        message = f"clinic demo: lost the services ({type(exc).__name__}: {exc})"
        print(message.splitlines()[0], file=sys.stderr)
        return 1
    finally:
        if up is not None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="submit the public vignettes and print where each was routed")
    demo.add_argument("--intake-url")
    demo.add_argument("--referral-url")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for routing")
    demo.set_defaults(fn=cmd_demo)
