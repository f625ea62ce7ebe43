"""`uv run python -m bench intake|e2e|webhooks|queue|all [--quick]`

Each benchmark creates its own database on CLINIC_BENCH_DATABASE_URL's server (default
postgresql://postgres@127.0.0.1:5432/test), prints its figures, the load generator's own CPU,
and a last line `<name> ratio <x.xx>` (e2e: `e2e p50_ms <x> p99_ms <y>`). SVG plots go to
docs/bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import structlog

from bench.common import DEFAULT_SERVER, have_wrk, machine

NAMES = ("intake", "e2e", "webhooks", "queue")


def run(name: str, quick: bool) -> None:
    started = time.monotonic()
    print(f"== bench {name}{' --quick' if quick else ''}", flush=True)
    if name == "intake":
        from bench import intake

        intake.main(quick)
    elif name == "e2e":
        from bench import e2e

        e2e.main(quick)
    elif name == "webhooks":
        from bench import webhooks

        webhooks.main(quick)
    else:
        from bench import queue

        argv = ["--events", "4000"] if quick else ["--rounds", "2"]
        asyncio.run(queue.main(argv))
    print(f"   ({time.monotonic() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=[*NAMES, "all"])
    parser.add_argument("--quick", action="store_true", help="short runs, fewer levels (CI)")
    args = parser.parse_args()
    os.environ.setdefault("CLINIC_BENCH_DATABASE_URL", DEFAULT_SERVER)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    print(
        f"machine: {machine()}; load generator: {'wrk' if have_wrk() else 'asyncio (wrk missing)'}",
        flush=True,
    )
    for name in NAMES if args.name == "all" else (args.name,):
        run(name, args.quick)


if __name__ == "__main__":
    main()
