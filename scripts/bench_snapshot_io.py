#!/usr/bin/env python3
"""Benchmark snapshot files: generate, write and load a Sepia-scale lab; print medians.

examples:
  python scripts/bench_snapshot_io.py                 # 20,000 queued jobs, 5 runs each
  python scripts/bench_snapshot_io.py --scale 10 --repeat 3   # 200,000 queued jobs
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optialloc.snapshots.fixturegen import GenParams, generate
from optialloc.snapshots.io import dump_snapshot, load_snapshot_document


def _median_s(repeat: int, action: Callable[[], Any]) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of `repeat` runs, and the last result.

    CPU time is shown too because a shared machine stretches wall time.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="\n".join(__doc__.splitlines()[2:]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scale", type=float, default=1.0, help="lab size multiplier (1 = Sepia)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median shown)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    params = GenParams(seed=args.seed, scale=args.scale)
    gen_s, gen_cpu, lab = _median_s(args.repeat, lambda: generate(params))
    snap = lab.snapshot
    print(
        f"lab: {len(snap.nodes)} nodes, {len(snap.queue)} queued jobs, {len(snap.running)} running "
        f"(seed {args.seed}, scale {args.scale}); median of {args.repeat} runs, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"generate: {gen_s:.3f} s wall, {gen_cpu:.3f} s CPU")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        dump_s, dump_cpu, _ = _median_s(
            args.repeat, lambda: dump_snapshot(snap, path, runtimes=lab.runtimes)
        )
        size_mb = path.stat().st_size / 1e6
        print(f"write: {dump_s:.3f} s wall, {dump_cpu:.3f} s CPU, {size_mb:.1f} MB")
        load_s, load_cpu, doc = _median_s(args.repeat, lambda: load_snapshot_document(path))
        per_job_us = 1e6 * load_cpu / max(len(snap.queue), 1)
        print(
            f"load: {load_s:.3f} s wall, {load_cpu:.3f} s CPU "
            f"({per_job_us:.0f} us CPU per queued job)"
        )
        if doc.snapshot != snap:
            print("ERROR: the loaded snapshot differs from the written one", file=sys.stderr)
            return 1
        as_json = Path(tmp) / "bench.json"
        dump_snapshot(snap, as_json, runtimes=lab.runtimes)
        json_mb = as_json.stat().st_size / 1e6
        json_s, json_cpu, doc = _median_s(args.repeat, lambda: load_snapshot_document(as_json))
        print(f"load as JSON: {json_s:.3f} s wall, {json_cpu:.3f} s CPU, {json_mb:.1f} MB")
        if doc.snapshot != snap:
            print("ERROR: the JSON snapshot differs from the written one", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
