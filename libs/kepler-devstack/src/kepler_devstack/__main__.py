"""`python -m kepler_devstack run | embedded` (what `make run` calls)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from kepler_devstack.config import ENVIRONMENT, StackConfig
from kepler_devstack.embedded import EmbeddedServerError
from kepler_devstack.logfmt import configure_logging, log
from kepler_devstack.stack import DevstackError, name_width, run_embedded, run_migrate, run_stack


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kepler_devstack",
        description="Kepler's local stack: `run` is what `make run` calls.",
        epilog=f"environment:\n{ENVIRONMENT}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="embedded servers (unless URLs are set), migrations, all services")
    commands.add_parser("embedded", help="only embedded PostgreSQL + Redis; prints export lines")
    commands.add_parser("migrate", help="alembic upgrade head on the embedded PostgreSQL (or the URL set)")
    return parser


def main(argv: list[str] | None = None) -> int:
    command = _parser().parse_args(argv).command
    config = StackConfig.from_env()
    # `embedded` keeps stdout for the export lines alone, so they can be copied or redirected to a file.
    configure_logging(
        sys.stderr if command == "embedded" else sys.stdout, name_width(), json_lines=config.log_json
    )
    entry = {"run": run_stack, "embedded": run_embedded, "migrate": run_migrate}[command]
    try:
        return asyncio.run(entry(config, sys.stdout))
    except (DevstackError, EmbeddedServerError) as exc:
        log.error(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
