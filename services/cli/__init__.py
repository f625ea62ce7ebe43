"""`clinic`: the operator's one entry point (up, serve, worker, migrate, keys, events, users, audit,
triage, demo). Each command group lives in a module of this package (or beside what it drives)
and is registered explicitly in `_extend_parser`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from services.cli.common import SERVICES
from services.cli.run import cmd_migrate, cmd_serve, cmd_up, cmd_worker
from services.common.settings import SettingError, get_settings

# -- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="the whole system: database, migrations, both services")
    up.set_defaults(fn=cmd_up)

    serve = sub.add_parser("serve", help="run one service's HTTP API")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--with-workers", action="store_true", help="also run its background consumers")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(fn=cmd_serve)

    worker = sub.add_parser("worker", help="run one service's background consumers only")
    worker.add_argument("service", choices=SERVICES)
    worker.add_argument("--heartbeat-file", help="where to record health (default: in the temp dir)")
    worker.add_argument("--heartbeat-seconds", type=float, help="seconds between heartbeats (default 10)")
    worker.set_defaults(fn=cmd_worker)

    migrate = sub.add_parser("migrate", help="apply every schema's migrations")
    migrate.set_defaults(fn=cmd_migrate)

    _extend_parser(sub)
    return parser


def _extend_parser(sub: Any) -> None:
    """The commands kept beside this module or beside what they drive, each registered by name
    here: a missing one fails at once, it is never skipped."""
    from services.cli import audit, demo, events, health, keys, secrets, staff
    from services.referral import triage_markdown

    for module in (keys, events, audit, secrets, health, staff, demo, triage_markdown):
        module.register(sub)


def main(argv: list[str] | None = None) -> int:
    try:
        get_settings()  # the whole environment is checked before anything is loaded or started
    except SettingError as exc:
        print(f"clinic: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    result: int = args.fn(args)
    return result
