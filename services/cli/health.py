"""`clinic health serve|worker <service>`: exit 0 when this container's process is healthy (an
API replica is asked `/health/ready` on loopback; a worker's heartbeat file must be fresh and ok)."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from typing import Any

from services.common.http.health import HEARTBEAT_SECONDS, STALE_AFTER_BEATS, heartbeat_file, read_heartbeat


def cmd_health(args: argparse.Namespace) -> int:
    if args.role == "worker":
        max_age = args.max_age or HEARTBEAT_SECONDS * STALE_AFTER_BEATS
        ok, why = read_heartbeat(heartbeat_file(args.service, args.heartbeat_file), max_age)
    else:
        ok, why = _ask_ready(args.service, args.port)
    print(f"{args.service} {args.role}: {why}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _ask_ready(service: str, port: int | None) -> tuple[bool, str]:
    from services.common.settings import get_settings

    settings = get_settings()
    port = port or (settings.intake_port if service == "intake" else settings.referral_port)
    url = f"http://127.0.0.1:{port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # our own loopback URL
            return response.status == 200, f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}: {exc.read(500).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url} unreachable: {exc}"


def register(sub: Any) -> None:
    from services.cli.common import SERVICES

    health = sub.add_parser(
        "health",
        help="exit 0 when this container's process is healthy (for a container healthcheck)",
    )
    health.add_argument("role", choices=["serve", "worker"], help="the command the container runs")
    health.add_argument("service", choices=SERVICES)
    health.add_argument("--port", type=int, help="serve: the service's port, if not the configured one")
    health.add_argument("--heartbeat-file", help="worker: the file its --heartbeat-file names")
    health.add_argument("--max-age", type=float, help="worker: seconds after which a heartbeat is stale")
    health.set_defaults(fn=cmd_health)
