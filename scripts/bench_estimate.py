#!/usr/bin/env python3
"""Benchmark `estimate_starts` on a snapshot file: median wall and CPU seconds of a few runs.

examples:
  nice -n 10 python scripts/bench_estimate.py                     # Sepia scale, 3 runs
  python scripts/bench_estimate.py --snapshot fixtures/snapshots/small.yaml --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from optialloc.policy import load_policy
from optialloc.sim.estimate import DEFAULT_HORIZON_S, estimate_starts
from optialloc.snapshots.io import load_snapshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--snapshot", default="fixtures/snapshots/sepia.gen.yaml")
    parser.add_argument("--policy", default="default")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--horizon-hours", type=float, default=DEFAULT_HORIZON_S / 3600)
    args = parser.parse_args(argv)
    snapshot = load_snapshot(args.snapshot)
    policy = load_policy(args.policy)
    walls, cpus, found = [], [], {}
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        found = estimate_starts(snapshot, policy, horizon_s=args.horizon_hours * 3600)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(
        f"{args.snapshot}: {len(snapshot.queue):,} queued, {len(snapshot.running):,} running, "
        f"{len(snapshot.nodes):,} nodes; {len(found):,} estimated within {args.horizon_hours:g} h"
    )
    print(
        f"estimate_starts: median {statistics.median(walls):.1f} s wall, "
        f"{statistics.median(cpus):.1f} s CPU over {args.repeat} runs "
        f"(wall {', '.join(f'{w:.1f}' for w in walls)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
