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

from optialloc.errors import InputError

EPILOG = """\
examples:
  # a Sepia-like week (generated from parameters) vs every baseline
  optialloc whatif --lab fixtures/labs/sepia.yaml --workload fixtures/workloads/sepia-week.yaml
  # a small JSON Lines workload, two policies, JSON out
  optialloc whatif --lab fixtures/labs/demo.yaml --workload fixtures/workloads/demo.jsonl \\
      --policy models/default.yaml --policy models/throughput.yaml --json
  # the RLScheduler Lublin windows, with a report directory
  optialloc whatif --swf ../shared/data/traces/lublin_256.swf --window lublin \\
      --swf-priority 1000 --baseline fcfs --baseline easy --report /tmp/lublin
  # what would the queue in this snapshot do (runtimes from the file)
  optialloc whatif --snapshot snapshot.yaml --default-runtime 3600
  # write a generated workload to a file
  python -m optialloc.sim.generate fixtures/workloads/sepia-week.yaml /tmp/week.jsonl

Baselines: fcfs (strict per machine type), teuthology (today's dispatchers:
one per tube, blocking, racing, 5 nodes kept back from scheduled* owners),
easy (EASY backfill, perfect runtime estimates), easy-maxtime (EASY with
max_job_time estimates). Without --policy/--baseline: models/default.yaml and
all four baselines. Waits are in hours in the table, seconds in --json.
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
        "--policy", metavar="FILE", action="append", default=[], help="policy model (repeatable)"
    )
    parser.add_argument(
        "--baseline", action="append", default=[],
        choices=("fcfs", "teuthology", "easy", "easy-maxtime"),
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
        help="decide at most every S simulated seconds "
        "(default: 60 s for labs, every event for --swf)",
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
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def factory(label: str, total: int) -> Any:
        # a pseudo-terminal of size 0x0 would make tqdm draw an empty bar
        width = shutil.get_terminal_size((100, 20)).columns
        bar = tqdm(total=total, desc=label, unit="job", file=sys.stderr, leave=False, ncols=width)
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
    for policy in args.policy:
        if not Path(policy).is_file():
            raise InputError("--policy", f"{policy}: no such file (e.g. models/default.yaml)")
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
    )
    scenario.dump_rejected = args.dump_rejected
    policies = args.policy or ([] if args.baseline else [str(default_policy_path())])
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
        title = f"What-if: {args.workload or args.snapshot or args.swf}"
        for path in write_report(outcomes, args.report, title=title):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(json_object(outcomes), indent=2, sort_keys=True))
    else:
        jobs = sum(len(w.jobs) for w in scenario.windows)
        nodes = len(scenario.nodes)
        tick = f"{scenario.tick_s:g} s ticks" if scenario.tick_s else "every event"
        print(f"{jobs} jobs, {len(scenario.windows)} window(s), {nodes} nodes, decisions: {tick}")
        print(render_text(outcomes))
        for outcome in outcomes:
            for note in outcome.notes[:5]:
                print(f"note ({outcome.name}): {note}")
    return 0


def default_policy_path() -> Path:
    """models/default.yaml of this checkout (the policy `serve` uses by default)."""
    return Path(__file__).resolve().parent.parent.parent / "models" / "default.yaml"
