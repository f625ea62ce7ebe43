"""`clinic keys create|list|revoke`: API keys from the command line (the key is printed once)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from services.cli.common import NotReady, not_ready, run_async, with_migrated_engine
from services.common.contracts.vocabulary import SpecialistDestination

# -- keys ------------------------------------------------------------------------------------


def cmd_keys_create(args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.common.access.audit import acting_as
    from services.common.access.auth import KeyError_, create_api_key

    async def body(engine: Any) -> str:
        with acting_as("cli", "createApiKey", resource=("api_keys", args.name)):
            async with AsyncSession(engine, expire_on_commit=False) as session:
                expires = None
                if args.expires_days is not None:
                    expires = datetime.now(UTC) + timedelta(days=args.expires_days)
                key, _row = await create_api_key(
                    session, role=args.role, name=args.name, destination=args.destination, expires_at=expires
                )
                await session.commit()
                return key

    try:
        key = run_async(lambda s: with_migrated_engine(s, body))
    except KeyError_ as exc:
        print(f"clinic keys create: {exc}", file=sys.stderr)
        return 2
    except NotReady as exc:
        return not_ready("keys create", exc)
    print(key)
    return 0


def cmd_keys_list(_: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.common.access.auth import KeyListing, list_api_keys

    async def body(engine: Any) -> list[KeyListing]:
        async with AsyncSession(engine) as session:
            return await list_api_keys(session)

    try:
        keys: list[KeyListing] = run_async(lambda s: with_migrated_engine(s, body))
    except NotReady as exc:
        return not_ready("keys list", exc)

    def when(value: datetime | None) -> str:
        return value.isoformat(timespec="seconds") if value else "-"

    print("name\trole\tdestination\tcreated\tlast_used\texpires\trevoked")
    for k in keys:
        cells = (k.name, k.role, k.destination or "-", when(k.created_at), when(k.last_used_at))
        print("\t".join((*cells, when(k.expires_at), when(k.revoked_at))))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.common.access.audit import acting_as
    from services.common.access.auth import revoke_api_key

    async def body(engine: Any) -> int:
        with acting_as("cli", "revokeApiKey", resource=("api_keys", args.name)):
            async with AsyncSession(engine) as session:
                count = await revoke_api_key(session, args.name)
                await session.commit()
                return count

    try:
        count = run_async(lambda s: with_migrated_engine(s, body))
    except NotReady as exc:
        return not_ready("keys revoke", exc)
    print(f"revoked {count} key(s) named {args.name!r}", file=sys.stderr)
    return 0 if count else 1


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key; prints the key alone on stdout")
    create.add_argument("--role", required=True, choices=["front_desk", "specialist", "clinician", "admin"])
    create.add_argument("--destination", choices=[d.value for d in SpecialistDestination])
    create.add_argument("--name", required=True)
    create.add_argument("--expires-days", type=int, help="refused this many days from now (default: never)")
    create.set_defaults(fn=cmd_keys_create)
    listing = keys.add_parser("list", help="every key: name, role, destination, created, last used, expiry")
    listing.set_defaults(fn=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke every key with this name")
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(fn=cmd_keys_revoke)
