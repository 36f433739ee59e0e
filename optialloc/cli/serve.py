"""`optialloc serve`: run the lab's one dispatcher (see `optialloc.dispatch.serve`)."""

from __future__ import annotations

import argparse
import sys

from optialloc.cli.web import start_beside, stop_beside
from optialloc.config import (
    describe_inventory,
    describe_queue,
    load_config,
    short_path,
    with_overrides,
)
from optialloc.dispatch.last_tick import TickRecorder
from optialloc.dispatch.serve import serve

DESCRIPTION = """\
Serve the lab: every tick, snapshot the queue, the nodes and the running jobs,
solve with the configured policy, validate the plan, lock nodes and launch
jobs; watch running jobs (time limits, progress) and release their nodes when
they end. Only one serve per state_dir. SIGTERM stops launching and exits,
leaving running jobs running (the next serve adopts them); SIGHUP reloads the
policy. Log: one line per decision and a summary per tick (stderr). With
http_port set, the status page and JSON API (`optialloc web`) run beside it.
"""

EXAMPLES = """\
examples:
  optialloc serve --exit-on-empty-queue
  optialloc serve --exit-on-empty-queue --tick-seconds 1 --state-dir /tmp/optialloc-state
"""


def handler(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    overrides: dict[str, object] = {}
    if args.tick_seconds is not None:
        overrides["tick_seconds"] = args.tick_seconds
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    if overrides:
        config = with_overrides(config, **overrides)
    print(
        f"optialloc serve: state in {short_path(config.state_dir)}; "
        f"queue: {describe_queue(config)}; nodes: {describe_inventory(config)}",
        file=sys.stderr,
    )
    # The view's record of each tick (last_tick.json), and the web server in its own
    # process: it reads the state files and never holds the GIL this loop needs.
    recorder = TickRecorder(config.state_dir)
    web = start_beside(args.config, config)
    try:
        return serve(config, exit_on_empty_queue=args.exit_on_empty_queue, on_tick=recorder.record)
    finally:
        stop_beside(web)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the lab's dispatcher",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--exit-on-empty-queue",
        action="store_true",
        help="exit once nothing is queued or running (teuthology's flag)",
    )
    parser.add_argument(
        "--tick-seconds",
        type=float,
        metavar="S",
        help="seconds between ticks (config: tick_seconds; default 10 s)",
    )
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (config: state_dir)")
    # decisions are INFO lines: show them unless -q style logging is configured
    parser.set_defaults(func=handler, default_verbosity=1)
