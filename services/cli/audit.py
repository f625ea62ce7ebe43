"""`clinic audit [--patient-id ID] [--actor NAME] [--since T] [--until T] [--service S]`: the access
audit of both services, newest first, one tab-separated line per access."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access.audit_api import AuditEntry, audit_page, audit_query

COLUMNS = ("at", "service", "actor_name", "actor_role", "actor_id", "action", "resource_type", "resource_id")


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="who read or changed which patient's records (newest first)")
    audit.add_argument("--patient-id", type=uuid.UUID, help="only accesses concerning this patient")
    audit.add_argument("--actor", help="only this key's (its name or id)")
    audit.add_argument(
        "--since", type=dt.datetime.fromisoformat, help="from this time (ISO 8601; UTC if bare)"
    )
    audit.add_argument("--until", type=dt.datetime.fromisoformat, help="before this time")
    audit.add_argument("--service", choices=("intake", "referral"), help="only this service's")
    audit.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    audit.set_defaults(fn=cmd_audit)


def format_entries(entries: list[AuditEntry]) -> list[str]:
    lines = ["\t".join((*COLUMNS, "patients", "outcome", "status", "request_id", "detail"))]
    for e in entries:
        cells = [str(getattr(e, c) if getattr(e, c) is not None else "-") for c in COLUMNS]
        cells[0] = e.at.isoformat(timespec="seconds")
        patients = ",".join(str(p) for p in e.patient_ids) or "-"
        detail = json.dumps(e.detail, separators=(",", ":"), default=str) if e.detail else "-"
        cells += [patients, e.outcome, str(e.status or "-"), e.request_id or "-", detail]
        lines.append("\t".join(cells))
    return lines


def cmd_audit(args: argparse.Namespace) -> int:
    from services.cli.common import run_async, with_engine

    async def body(engine: AsyncEngine) -> list[AuditEntry]:
        query = audit_query(
            service=args.service,
            patient_id=args.patient_id,
            actor=args.actor,
            since=args.since,
            until=args.until,
        )
        async with AsyncSession(engine) as session:
            return (await audit_page(session, query, max(1, args.limit), None)).items

    entries: list[AuditEntry] = run_async(lambda s: with_engine(s, body))
    print("\n".join(format_entries(entries)))
    return 0
