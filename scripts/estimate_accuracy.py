#!/usr/bin/env python3
"""How accurate are estimated starts? Print the per-band error table of docs/whatif.md.

Replays a workload through a policy on the what-if engine (the real
dispatcher) and, at sampled ticks, runs `estimate_starts` on the state the
tick left; compares each job's estimate at submission and 1 h before its
actual start with the actual start (`optialloc.sim.estimate_accuracy`).

examples:
  # the published table (docs/whatif.md "Estimated start times")
  nice -n 10 python scripts/estimate_accuracy.py --lab fixtures/labs/sepia.yaml \\
      --workload fixtures/workloads/sepia-week.yaml --tick-seconds 60 \\
      --every-arrival 1 --every-minutes 40
  # a quick look on the demo workload
  python scripts/estimate_accuracy.py --lab fixtures/labs/demo.yaml \\
      --workload fixtures/workloads/demo.jsonl --every-arrival 1 --every-minutes 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from optialloc.domain import Snapshot
from optialloc.policy import Policy
from optialloc.sim.estimate import DEFAULT_HORIZON_S, estimate_starts
from optialloc.sim.estimate_accuracy import accuracy, format_table, measure
from optialloc.sim.scenario import load_scenario


def _logged(estimate: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def run(snapshot: Snapshot, policy: Policy) -> dict[str, Any]:
        cpu = time.process_time()
        found = estimate(snapshot, policy)
        print(
            f"{snapshot.taken_at:%a %H:%M}: {len(found):,} of {len(snapshot.queue):,} queued "
            f"estimated in {time.process_time() - cpu:.1f} s CPU",
            file=sys.stderr,
            flush=True,
        )
        return found

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", required=True)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--policy", default="models/default.yaml")
    parser.add_argument(
        "--tick-seconds",
        type=float,
        default=None,
        help="fixed decision ticks (default: as serve decides, see docs/whatif.md)",
    )
    parser.add_argument(
        "--every-arrival",
        type=int,
        default=1,
        help="estimate at every Nth tick with arrivals (0: never); its new jobs' "
        "estimates are the ones 'at submission'",
    )
    parser.add_argument(
        "--every-minutes",
        type=float,
        default=40.0,
        help="also estimate every M simulated minutes (0: never)",
    )
    parser.add_argument("--lead-minutes", type=float, default=60.0)
    parser.add_argument(
        "--tolerance-minutes",
        type=float,
        default=5.0,
        help="an estimate counts as made 'lead before start' within this many minutes",
    )
    parser.add_argument("--horizon-hours", type=float, default=DEFAULT_HORIZON_S / 3600)
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument("--verbose", action="store_true", help="one line per estimate on stderr")
    args = parser.parse_args(argv)

    scenario = load_scenario(lab=args.lab, workload=args.workload, tick_s=args.tick_seconds)
    estimate: Callable[..., dict[str, Any]] = partial(
        estimate_starts, horizon_s=args.horizon_hours * 3600
    )
    if args.verbose:
        estimate = _logged(estimate)
    cpu, wall = time.process_time(), time.perf_counter()
    result, samples = measure(
        scenario,
        args.policy,
        estimate,
        every_arrival=args.every_arrival,
        every_hours=args.every_minutes / 60,
    )
    report = accuracy(
        result,
        samples,
        lead_s=args.lead_minutes * 60,
        tolerance_s=args.tolerance_minutes * 60,
    )
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if args.json:
        json.dump({**report, "cpu_s": cpu, "wall_s": wall}, sys.stdout, indent=1)
        print()
        return 0
    walls = report["estimate_wall_s"] or [0.0]
    print(format_table(report))
    print()
    print(
        f"{len(result.records):,} jobs, {report['samples']} estimates "
        f"(queue {min(report['queued'], default=0):,}-{max(report['queued'], default=0):,} jobs; "
        f"each {statistics.median(walls):.1f} s median, {max(walls):.1f} s max); "
        f"{report['started_at_once']:,} sampled jobs started in their arrival tick (left out); "
        f"horizon {args.horizon_hours:g} h; {cpu:.0f} s CPU, {wall:.0f} s wall"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
