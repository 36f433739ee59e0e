"""Benchmark (not collected by pytest): a 10,000-job what-if on a 256-node lab with CP-SAT.

    python tests/bench_whatif.py [--runs 3] [--jobs 10000] [--nodes 256] [--policy FILE]

Generates a teuthology-like workload (seeded) on one machine type, replays
it through the real Dispatcher with the policy (60 s ticks, as `whatif`
does by default) and prints the wall time of each run and the median, plus
the tick count and solver time per tick. Target (issue "What-if"): <= 60 s
on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from optialloc.policy import load_policy  # noqa: E402
from optialloc.sim.engine import simulate  # noqa: E402
from optialloc.sim.generate import WeekParams, generate, offered_load  # noqa: E402
from optialloc.sim.metrics import summarize  # noqa: E402
from optialloc.sim.model import DEFAULT_ORIGIN, SimJob  # noqa: E402
from optialloc.sim.optialloc_sched import OptiallocScheduler  # noqa: E402
from optialloc.sim.scenario import synthetic_lab  # noqa: E402


def workload(jobs: int, seed: int = 11) -> list[SimJob]:
    params = WeekParams(
        seed=seed,
        days=6,
        nightlies=(
            ("rados", "smithi", 250, 500),
            ("rbd", "smithi", 100, 250),
            ("fs", "smithi", 150, 350),
            ("rgw", "smithi", 80, 200),
            ("krbd", "smithi", 100, 250),
        ),
        day_types=(("smithi", 1.0),),
        backlog_jobs=1000,
    )
    out = generate(params)[:jobs]
    return [replace(j, index=k) for k, j in enumerate(out)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--nodes", type=int, default=256)
    parser.add_argument("--tick-seconds", type=float, default=60.0)
    parser.add_argument("--policy", default=str(REPO / "models" / "default.yaml"))
    args = parser.parse_args()
    jobs = workload(args.jobs)
    nodes = synthetic_lab("smithi", args.nodes)
    names = {"smithi": [n.name for n in nodes]}
    load = offered_load(jobs, {"smithi": args.nodes})["smithi"]
    span_h = (jobs[-1].submit - jobs[0].submit) / 3600
    print(
        f"workload: {len(jobs)} jobs over {span_h:.1f} h, offered load {load:.2f}, "
        f"lab {args.nodes} nodes"
    )
    policy = load_policy(args.policy)
    walls = []
    for run in range(args.runs):
        scheduler = OptiallocScheduler(
            name="bench", policy=policy, nodes=nodes, jobs=jobs, origin=DEFAULT_ORIGIN
        )
        t0 = time.perf_counter()
        result = simulate(jobs, scheduler, names, tick_s=args.tick_seconds)
        wall = time.perf_counter() - t0
        walls.append(wall)
        m = summarize(result)
        print(
            f"run {run + 1}: {wall:.1f} s wall; {m['solver_ticks']} ticks, solver p50 "
            f"{m['solver_p50_s'] * 1000:.1f} ms, p99 {m['solver_p99_s'] * 1000:.1f} ms; "
            f"{m['never_started']} never started; utilization {m['utilization'] * 100:.1f} %"
        )
    print(
        f"median wall time: {statistics.median(walls):.1f} s over {len(walls)} run(s) "
        "(target <= 60 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
