"""The `optialloc` command: global options, subcommand registry and error handling.

Each subcommand lives in its own module under `optialloc.cli` with a
`register(subparsers)` function that adds its parser and sets
`func=handler`, where `handler(args) -> int` returns the exit code.
`OptiallocError`s raised by handlers become one clear line on stderr and
their own exit code (see `optialloc.errors.ExitCode`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from optialloc import __version__
from optialloc.errors import ExitCode, OptiallocError

#: Subcommand modules, in the order `--help` lists them.
SUBCOMMANDS = ("plan", "schedule", "queue", "nodes", "serve", "whatif", "demo")

EPILOG = """\
examples:
  optialloc plan --dry-run --snapshot fixtures/snapshots/small.yaml
  optialloc schedule job.yaml --name my-run --priority 100 -N 3
  optialloc queue list --owner scheduled_me@host
  optialloc nodes list --machine-type smithi
  optialloc serve --exit-on-empty-queue
  optialloc whatif --lab fixtures/labs/demo.yaml --workload fixtures/workloads/demo.jsonl

Settings come from --config FILE or $OPTIALLOC_CONFIG (docs/configuration.md);
with neither, optialloc runs on its embedded default (SQLite queue and inventory).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optialloc",
        description="One constraint-optimization dispatcher for a whole teuthology lab.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML config file (default: $OPTIALLOC_CONFIG)"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    parser.add_argument("--version", action="version", version=f"optialloc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"optialloc.cli.{name}")
        module.register(subparsers)
    return parser


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return int(ExitCode.USAGE)
    setup_logging(args.verbose + int(getattr(args, "default_verbosity", 0)))
    try:
        return int(args.func(args))
    except OptiallocError as exc:
        print(f"optialloc {args.command}: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print(f"optialloc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
