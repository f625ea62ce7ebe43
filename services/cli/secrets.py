"""`clinic secrets new-key`: a key for CLINIC_SECRET_KEY (it seals webhook signing secrets at rest).

Re-sealing after a key change is part of `clinic migrate` (see the README, "Rotating the secret
key"); this command only makes keys, it touches no database.
"""

from __future__ import annotations

import argparse
from typing import Any

from services.common.access.secret_box import new_key


def register(sub: Any) -> None:
    secrets = sub.add_parser("secrets", help="the key that seals webhook signing secrets at rest")
    commands = secrets.add_subparsers(dest="secrets_command", required=True)
    make = commands.add_parser("new-key", help="print a new key for CLINIC_SECRET_KEY (stdout only)")
    make.set_defaults(fn=cmd_secrets_new_key)


def cmd_secrets_new_key(_: argparse.Namespace) -> int:
    print(new_key())
    return 0
