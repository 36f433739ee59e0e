"""`optialloc whatif`: replay a workload through optialloc policies and today's schedulers.

Every policy runs through the real `Dispatcher.tick()` (simulated clock,
queue, inventory and runner); every baseline runs on the same engine. See
docs/whatif.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from optialloc.cli.progress import progress_bar
from optialloc.errors import InputError

EPILOG = """\
examples:
  # the shipped demo workload on the shipped demo lab: the default policy vs every baseline
  optialloc whatif --lab demo --workload demo
  # two shipped policies, JSON out
  optialloc whatif --lab demo --workload demo --policy default --policy throughput --json
  # the default policy beside two baselines, with a report directory
  optialloc whatif --lab demo --workload demo --baseline teuthology --baseline fcfs \\
      --report /tmp/whatif
  # what would the queue in this snapshot do (runtimes from the file)
  optialloc whatif --snapshot fixtures/snapshots/small.yaml --default-runtime 3600
  # RLScheduler's ten Lublin windows (lublin_256.swf from github.com/DIR-LAB/deep-batch-scheduler)
  optialloc whatif --swf lublin_256.swf --window lublin --swf-priority 1000 \\
      --baseline fcfs --baseline easy --report /tmp/lublin
  # a Sepia-like week from generator parameters (a checkout's fixtures; several minutes):
  #   optialloc whatif --lab fixtures/labs/sepia.yaml --workload fixtures/workloads/sepia-week.yaml
  # write a generated workload to a file
  python -m optialloc.sim.generate fixtures/workloads/sepia-week.yaml /tmp/week.jsonl

--lab and --workload take a file or the name of a shipped one (demo);
--policy a file or a shipped model (default, throughput).
Baselines: fcfs (strict per machine type), teuthology (today's dispatchers:
one per tube, blocking, racing, 5 nodes kept back from scheduled* owners),
easy (EASY backfill, perfect runtime estimates), easy-maxtime (EASY with
max_job_time estimates), greedy (priority order, start whatever fits, no
holds; on request). Without --policy/--baseline: the default policy and the
first four baselines; the default policy runs beside named baselines unless
--no-policy. Lab workloads decide as serve does (on every arrival and finish,
at serve's minimum gap); --tick-seconds 60 gives fixed 60 s ticks.
Waits are in hours in the table, seconds in --json.
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    parser = subparsers.add_parser(
        "whatif",
        help="replay a workload through policies and baselines, side by side",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--workload", metavar="FILE", help="JSON Lines workload, or generator params YAML"
    )
    source.add_argument(
        "--snapshot", metavar="FILE", help="snapshot file: its queue and running jobs"
    )
    source.add_argument("--swf", metavar="FILE", help="Standard Workload Format trace")
    parser.add_argument(
        "--lab", metavar="LAB", help="lab YAML (default for --snapshot: its nodes; --swf: MaxNodes)"
    )
    parser.add_argument(
        "--window", metavar="START:COUNT", action="append", default=[],
        help="SWF jobs START..START+COUNT-1 (0-based, repeatable); "
        "'lublin' = RLScheduler's 10 windows",
    )  # fmt: skip
    parser.add_argument(
        "--policy", metavar="NAME|FILE", action="append", default=[],
        help="policy model: a shipped name (default, throughput) or a YAML file (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--no-policy", action="store_true",
        help="baselines only (by default the shipped default policy runs beside them)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", action="append", default=[],
        choices=("fcfs", "teuthology", "easy", "easy-maxtime", "greedy"),
        help="baseline scheduler (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object keyed by policy/baseline"
    )
    parser.add_argument(
        "--report", metavar="DIR", help="write results.md/.csv/.json and PNG plots here"
    )
    parser.add_argument(
        "--tick-seconds", type=float, default=None, metavar="S",
        help="decide on fixed ticks every S simulated seconds (e.g. 60) instead of as serve "
        "does (default for labs: on every arrival and finish, at serve's minimum gap and "
        "idle tick; --swf: after every event)",
    )  # fmt: skip
    parser.add_argument(
        "--idle-seconds", type=float, default=None, metavar="S",
        help="with serve's cadence, the tick when nothing happens (default: serve's "
        "tick_seconds, 10 s; e.g. 300 for a faster replay of a long week)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the teuthology race and SWF priorities"
    )
    parser.add_argument(
        "--swf-priority", default="bands", metavar="N|bands",
        help="SWF jobs' priority: 'bands' (default: drawn from teuthology's bands per user-day, "
        "with --seed) or one number for all (e.g. 1000, as for the published Lublin table)",
    )  # fmt: skip
    parser.add_argument(
        "--swf-compress", type=float, default=1.0, metavar="F", help="scale SWF submit times"
    )
    parser.add_argument(
        "--default-runtime", type=float, metavar="S", help="runtime of snapshot jobs without one"
    )
    parser.add_argument(
        "--max-job-time", type=float, default=259200.0, metavar="S", help="(default 259200 s)"
    )
    parser.add_argument(
        "--dump-rejected",
        metavar="DIR",
        help="save the snapshot of every plan the validator rejects here (first 20), for debugging",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="simulate the policies/baselines in N processes (default 1; no progress bar)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=handle)


def _windows(values: list[str]) -> list[str]:
    from optialloc.sim.swf import LUBLIN_WINDOW_JOBS, LUBLIN_WINDOWS

    out: list[str] = []
    for value in values:
        if value == "lublin":
            out += [f"{s}:{LUBLIN_WINDOW_JOBS}" for s in LUBLIN_WINDOWS]
        else:
            out.append(value)
    return out


def _progress_factory(quiet: bool) -> Any:
    """A bar per simulation on a terminal; elsewhere a line at most every 10 s (cli.progress)."""
    if quiet:
        return None

    def factory(label: str, total: int) -> Any:
        bar = progress_bar(total, label, "job", leave=False)
        if hasattr(bar, "ncols"):
            # a pseudo-terminal of size 0x0 would make tqdm draw an empty bar
            bar.ncols = shutil.get_terminal_size((100, 20)).columns
        done = [0]
        first: list[float] = []

        def update(now: float, finished: int, _total: int) -> None:
            if not first:
                first.append(now)
            if finished > done[0]:
                bar.update(finished - done[0])
                done[0] = finished
            bar.set_postfix_str(f"simulated {(now - first[0]) / 3600:.1f} h", refresh=False)
            if finished >= total:
                bar.close()

        return update

    return factory


def handle(args: argparse.Namespace) -> int:
    from optialloc.sim import scenario as sc
    from optialloc.sim.report import json_object, render_text, write_report

    if args.swf_priority == "bands":
        swf_priority: int | None = None
    else:
        try:
            swf_priority = int(args.swf_priority)
        except ValueError as exc:
            raise InputError(
                "--swf-priority", f"{args.swf_priority!r}: give a number or 'bands'"
            ) from exc
    from optialloc.resources import resolve_file, shipped_names

    for policy in args.policy:
        if not Path(resolve_file("models", policy)).is_file():
            raise InputError(
                "--policy",
                f"{policy}: no such file and no shipped model of that name "
                f"(shipped: {', '.join(shipped_names('models'))})",
            )
    if args.no_policy and args.policy:
        raise InputError("--no-policy", "give --policy or --no-policy, not both")
    scenario = sc.load_scenario(
        lab=args.lab,
        workload=args.workload,
        snapshot=args.snapshot,
        swf=args.swf,
        windows=_windows(args.window),
        tick_s=args.tick_seconds,
        seed=args.seed,
        swf_priority=swf_priority,
        swf_compress=args.swf_compress,
        default_runtime=args.default_runtime,
        max_job_time=args.max_job_time,
        idle_s=args.idle_seconds,
    )
    scenario.dump_rejected = args.dump_rejected
    # optialloc's own policy is always in the table unless --no-policy; baselines
    # default to all four unless a --policy alone was asked for.
    policies = args.policy or ([] if args.no_policy else ["default"])
    baselines = args.baseline or (
        [] if args.policy else ["fcfs", "teuthology", "easy", "easy-maxtime"]
    )
    schedulers = [("policy", p) for p in policies] + [("baseline", b) for b in baselines]
    if args.workers < 1:
        raise InputError("--workers", f"{args.workers}: give at least 1 process")
    outcomes = sc.run(
        scenario, schedulers, progress=_progress_factory(args.quiet), workers=args.workers
    )
    if args.report:
        title = (
            f"What-if: {args.workload or args.snapshot or args.swf} "
            f"(decisions: {scenario.decisions()})"
        )
        for path in write_report(outcomes, args.report, title=title):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(json_object(outcomes), indent=2, sort_keys=True))
    else:
        print(workload_line(scenario))
        print(render_text(outcomes))
        for outcome in outcomes:
            walls = [float(w.get("sim_wall_s", 0.0)) for w in outcome.per_window]
            if len(walls) > 1:
                print(
                    f"simulation wall time ({outcome.name}): {sum(walls):.1f} s in all, "
                    f"{sum(walls) / len(walls):.1f} s per window (mean)"
                )
        for outcome in outcomes:
            for note in outcome.notes[:5]:
                print(f"note ({outcome.name}): {note}")
    return 0


def workload_line(scenario: Any) -> str:
    """The table's header line: jobs in all and per window, nodes, the decision cadence."""
    counts = [len(w.jobs) for w in scenario.windows]
    total, windows = sum(counts), len(counts)
    if windows == 1:
        jobs = f"{total} jobs, 1 window"
    elif len(set(counts)) == 1:
        jobs = f"{total} jobs in all: {windows} windows of {counts[0]} jobs"
    else:
        jobs = f"{total} jobs in all: {windows} windows of {min(counts)}-{max(counts)} jobs"
    return f"{jobs}, {len(scenario.nodes)} nodes, decisions: {scenario.decisions()}"
