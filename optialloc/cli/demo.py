"""`optialloc demo`: serve a few dozen mixed jobs on the shipped demo lab and summarize."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile

from optialloc.cli.demo_run import format_summary, run_demo

DESCRIPTION = """\
Run the main job on a demo lab: queue a few dozen jobs of different sizes,
priorities, machine types and owners into a fresh embedded queue, serve them
to the end on the shipped demo lab (14 nodes) with the real dispatcher and
a command runner that sleeps 0.5-3 s per job, then print a summary (jobs run,
waits, utilization, per owner). Takes about 15-30 s. The state (queue,
journal, archive) goes to a temporary directory that is removed at the end
unless --keep or --state-dir is given.
"""

EXAMPLES = """\
examples:
  optialloc demo
  optialloc demo --jobs 12 --seed 7 --no-progress
  optialloc demo --jobs 8 --keep            # keep the state dir to look at afterwards
"""


def handler(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        print("optialloc demo: --jobs must be at least 1", file=sys.stderr)
        return 2
    temporary = args.state_dir is None
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="optialloc-demo-")
    print(f"optialloc demo: state in {state_dir}", file=sys.stderr)
    try:
        summary = run_demo(
            jobs=args.jobs, seed=args.seed, state_dir=state_dir, progress=not args.no_progress
        )
        print(format_summary(summary, kept=args.keep or not temporary))
    finally:
        if temporary and not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0 if summary.jobs and summary.failed == 0 else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="serve a few dozen jobs on the demo lab",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=36,
        metavar="N",
        help="jobs to queue in all, the suite's last_in_suite job included (default 36)",
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    parser.add_argument(
        "--state-dir", metavar="DIR", help="state directory, kept (default: a temp dir, removed)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    parser.set_defaults(func=handler)
