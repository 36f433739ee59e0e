"""The `optialloc` command: global options, subcommand registry and error handling.

Each subcommand lives in its own module under `optialloc.cli` with a
`register(subparsers)` function that adds its parser and sets
`func=handler`, where `handler(args) -> int` returns the exit code.
`OptiallocError`s raised by handlers become one clear line on stderr and
their own exit code (see `optialloc.errors.ExitCode`). Two operating-system
errors every command can meet are handled here once, also as one line:
a closed output pipe (`optialloc demo | head`: exit 0, nothing more is
written) and a directory where a file was expected (exit 3, naming it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from optialloc import __version__
from optialloc.errors import ExitCode, OptiallocError

#: Subcommand modules, in the order `--help` lists them.
SUBCOMMANDS = ("plan", "schedule", "queue", "nodes", "serve", "web", "whatif", "demo")

EPILOG = """\
examples:
  optialloc demo
  optialloc plan --dry-run --snapshot fixtures/snapshots/small.yaml
  optialloc schedule fixtures/jobs/rados-basic.yaml --name my-run --machine-type smithi -N 3
  optialloc queue list --owner scheduled_me@host
  optialloc nodes list --machine-type smithi
  optialloc serve --exit-on-empty-queue
  optialloc web --port 8080
  optialloc whatif --lab demo --workload demo

Settings come from --config FILE or $OPTIALLOC_CONFIG (docs/configuration.md);
with neither, optialloc runs on its embedded default (SQLite queue and inventory
in $XDG_STATE_HOME/optialloc, else ~/.local/state/optialloc; the shipped demo lab).
Exit codes: 0 ok (also when the reader of the output went away), 1 internal
error, 2 usage, 3 bad input, 4 plan rejected, 5 backend unreachable,
6 conflict, 7 not found.
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
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Point stdout at /dev/null so
        # the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitCode.OK)
    except IsADirectoryError as exc:
        print(
            f"optialloc {args.command}: {exc.filename}: is a directory, expected a file",
            file=sys.stderr,
        )
        return int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        print(f"optialloc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
