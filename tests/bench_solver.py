"""Solver benchmark: per-tick wall time, status, gap and memory at Sepia scale or 10x.

Run: `python tests/bench_solver.py [--scale 1|10] [--ticks 9] [--policy models/default.yaml]`
(not collected by pytest). Builds a seeded Sepia-like snapshot in memory
(tests/solver_support.sepia_snapshot: 20,000 queued jobs x scale in 150 x scale
runs of 1-4 node jobs, 50 x scale owners, 330 x scale nodes over 4 machine types,
~10% multi-type runs) and runs several ticks: each tick solves, starts what the
plan starts, ends `--end-share` of the running jobs (default all, so every tick
sees all 330 x scale nodes free, the hardest case) and moves the clock on 60 s.
Prints one line per tick and a summary: median and p99 of wall time (snapshot in
memory -> Plan) and CPU time, worst gap, statuses, peak RSS of the process and
the solve's own peak allocation (tracemalloc, measured on one extra tick because
tracing slows it down). `--small` also times what-if-sized instances.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import statistics
import sys
import time
import tracemalloc
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from solver_support import job, nodes, sepia_snapshot, snapshot

from optialloc.domain import RunningJob, Snapshot
from optialloc.policy import Policy, default_policy, load_policy
from optialloc.solver import solve


def next_tick(
    snap: Snapshot, plan_starts: dict[str, tuple[str, ...]], rng: random.Random, end_share: float
) -> Snapshot:
    """Apply a plan's starts, end `end_share` of the running jobs, advance 60 s."""
    by_id = {j.job_id: j for j in snap.queue}
    running = list(snap.running)
    running += [RunningJob(by_id[jid], nodes, snap.taken_at) for jid, nodes in plan_starts.items()]
    running = [rj for rj in running if rng.random() >= end_share]
    queue = tuple(j for j in snap.queue if j.job_id not in plan_starts)
    return replace(
        snap,
        taken_at=snap.taken_at + timedelta(seconds=60),
        queue=queue,
        running=tuple(running),
    )


def small_instances(policy: Policy, repeats: int = 50) -> None:
    """Per-call cost on what-if-sized instances (the simulator solves thousands of these)."""
    rng = random.Random(0)
    cases = {
        "everything fits (TRIVIAL fast path)": snapshot(
            nodes("smithi", 20), [job(k, rng.choice((1, 2))) for k in range(8)]
        ),
        "15 nodes x 40 contended jobs (CP-SAT)": snapshot(
            nodes("smithi", 10) + nodes("mira", 5),
            [
                job(
                    k,
                    rng.choice((1, 2, 3, 4)),
                    rng.choice(("smithi", "mira", "smithi,mira")),
                    priority=rng.choice((10, 75, 100, 1000)),
                    owner=f"o{k % 4}",
                    run=f"r{k % 6}",
                    waited_h=rng.uniform(0, 30),
                )
                for k in range(40)
            ],
        ),
        "no free node": snapshot([], [job(k, 1) for k in range(40)]),
    }
    for name, snap in cases.items():
        walls = []
        for _ in range(repeats):
            began = time.perf_counter()
            plan = solve(snap, policy)
            walls.append(time.perf_counter() - began)
        print(
            f"small: {name}: wall median {statistics.median(walls) * 1000:.2f} ms, "
            f"p99 {percentile(walls, 0.99) * 1000:.2f} ms, {plan.solver.status}"
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="1 = Sepia, 10 = 10x (default 1)")
    parser.add_argument("--ticks", type=int, default=9, help="ticks to time (default 9)")
    parser.add_argument("--policy", default=None, help="policy model (default models/default.yaml)")
    parser.add_argument(
        "--busy", type=float, default=0.0, help="share of nodes busy at tick 0 (default 0)"
    )
    parser.add_argument(
        "--end-share",
        type=float,
        default=1.0,
        help="share of running jobs that end between ticks (default 1: every tick sees "
        "all nodes free, the hardest case at a given scale)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--learned",
        type=int,
        default=0,
        help="give every job one of N descriptions with a learned runtime estimate "
        "(lognormal, median 50 min), as `serve` has after a few nights (default 0: none)",
    )
    parser.add_argument("--small", action="store_true", help="also time what-if-sized instances")
    parser.add_argument(
        "--decide-only",
        action="store_true",
        help="solve with explain=False, as serve does between explained ticks with a big "
        "queue (default: every waiting job gets its position and reason)",
    )
    args = parser.parse_args(argv)
    explain = not args.decide_only

    policy = load_policy(args.policy) if args.policy else default_policy()
    if args.small:
        small_instances(policy)
    rng = random.Random(args.seed)
    built = time.perf_counter()
    snap = sepia_snapshot(args.scale, seed=args.seed, busy_fraction=args.busy)
    if args.learned:
        descriptions = [f"suite/{k}" for k in range(args.learned)]
        queue = tuple(replace(j, description=rng.choice(descriptions)) for j in snap.queue)
        learned = {d: rng.lognormvariate(math.log(3000.0), 1.0) for d in descriptions}
        snap = replace(snap, queue=queue, runtime_estimates=learned)
    print(
        f"scale {args.scale}: {len(snap.queue):,} queued, {len(snap.nodes):,} nodes, "
        f"{len(snap.running):,} running at tick 0; policy {policy.name}"
        f"{'' if explain else ', decisions only'}; "
        f"built in {time.perf_counter() - built:.1f} s; load average {os.getloadavg()[0]:.1f}"
    )
    walls: list[float] = []
    cpus: list[float] = []
    gaps: list[float] = []
    statuses: list[str] = []
    solve(snap, policy)  # warm-up: imports, OR-Tools start-up
    for tick in range(args.ticks):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        plan = solve(snap, policy, explain=explain)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        walls.append(wall)
        cpus.append(cpu)
        gaps.append(plan.solver.gap)
        statuses.append(plan.solver.status)
        free = sum(1 for n in snap.nodes if n.free) - sum(len(r.nodes) for r in snap.running)
        print(
            f"tick {tick}: {wall * 1000:8.1f} ms wall {cpu * 1000:8.1f} ms cpu  "
            f"{plan.solver.status:8s} gap {plan.solver.gap:.2%}  free {free:5d}  "
            f"starts {len(plan.starts):5d}  held {len(plan.held):3d}  "
            f"vars {plan.solver.variables:6d}  queue {len(snap.queue):,}"
        )
        snap = next_tick(snap, {s.job_id: s.nodes for s in plan.starts}, rng, args.end_share)
    tracemalloc.start()
    solve(snap, policy, explain=explain)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"summary scale {args.scale}: wall median {statistics.median(walls) * 1000:.1f} ms, "
        f"p99 {percentile(walls, 0.99) * 1000:.1f} ms; cpu median "
        f"{statistics.median(cpus) * 1000:.1f} ms, p99 {percentile(cpus, 0.99) * 1000:.1f} ms; "
        f"worst gap {max(gaps):.2%}; statuses {sorted(set(statuses))}; "
        f"peak RSS {rss_mib:.0f} MiB (process, snapshot included); "
        f"solve peak allocation {traced_peak / 2**20:.0f} MiB (tracemalloc)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
