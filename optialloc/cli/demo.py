"""`optialloc demo`: serve a few dozen mixed jobs on the embedded demo lab and summarize."""

from __future__ import annotations

import argparse

from optialloc.cli.demo_run import format_summary, run_demo

DESCRIPTION = """\
Run the main job on a demo lab: queue a few dozen jobs of different sizes,
priorities, machine types and owners into a fresh embedded queue, serve them
to the end on fixtures/labs/demo.yaml (14 nodes) with the real dispatcher and
a command runner that sleeps 0.5-3 s per job, then print a summary (jobs run,
waits, utilization, per owner). Takes about 15-30 s.
"""


def handler(args: argparse.Namespace) -> int:
    summary = run_demo(
        jobs=args.jobs, seed=args.seed, state_dir=args.state_dir, progress=not args.no_progress
    )
    print(format_summary(summary))
    return 0 if summary.jobs and summary.failed == 0 else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="serve a few dozen jobs on the demo lab",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--jobs", type=int, default=36, metavar="N", help="jobs to queue (default 36)"
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    parser.add_argument(
        "--state-dir", metavar="DIR", help="state directory (default: a fresh temp dir)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=handler)
