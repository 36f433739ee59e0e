"""Benchmark: lock and unlock 1,000 jobs of 1-4 nodes on a 3,000-node embedded inventory.

Not collected by pytest (no test_ prefix). Run: python tests/bench_inventory.py [--runs 5]
Prints node locks per second (and unlocks) for each run and the median; the
target is >= 2,000 node locks per second. Each run uses a fresh SQLite file in
a temp directory, one lock() call and one unlock() call per job, as the
dispatcher makes them. `--paddles` runs the same jobs through the paddles
adapter against the look-alike server on loopback (tests/paddles_server.py):
that measures the adapter's request overhead, not a real paddles.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from paddles_server import FakePaddles

from optialloc.domain import Node
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.inventory.paddles import PaddlesInventory
from optialloc.inventory.paddles_client import PaddlesClient

TYPES = {"smithi": 1500, "mira": 1000, "gibba": 500}


def lab() -> list[Node]:
    return [
        Node(f"{t}{i:04d}", t, os_type="ubuntu", os_version="22.04", arch="x86_64")
        for t, count in TYPES.items()
        for i in range(1, count + 1)
    ]


def one_run(seed: int, jobs: int, paddles: bool = False) -> tuple[float, float, int]:
    """(node locks/s, node unlocks/s, nodes locked) for one fresh inventory."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp, FakePaddles() as server:
        inventory: EmbeddedInventory | PaddlesInventory
        if paddles:
            for node in lab():
                server.add_node(node.name, node.machine_type)
            inventory = PaddlesInventory(PaddlesClient(server.url), "optialloc@bench")
        else:
            inventory = EmbeddedInventory(Path(tmp) / "inventory.sqlite", "optialloc@bench")
            inventory.import_nodes(lab())
        free = {t: [f"{t}{i:04d}" for i in range(1, c + 1)] for t, c in TYPES.items()}
        for names in free.values():
            rng.shuffle(names)
        plan = []
        for job in range(jobs):
            machine_type = rng.choices(list(TYPES), weights=list(TYPES.values()))[0]
            count = rng.randint(1, 4)
            names = [free[machine_type].pop() for _ in range(count)]
            plan.append((names, f"/archive/bench-run/{job}"))
        total = sum(len(names) for names, _ in plan)
        started = time.perf_counter()
        for names, description in plan:
            if isinstance(inventory, EmbeddedInventory):
                inventory.lock(names, description, owner="scheduled_bench@host")
            else:
                inventory.lock(names, description)
        locked_s = time.perf_counter() - started
        assert len(inventory.held()) == total
        started = time.perf_counter()
        for names, description in plan:
            inventory.unlock(names, description)
        unlocked_s = time.perf_counter() - started
        assert not inventory.held()
    return total / locked_s, total / unlocked_s, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--paddles", action="store_true", help="through the paddles adapter")
    args = parser.parse_args()
    locks, unlocks = [], []
    for run in range(args.runs):
        lock_rate, unlock_rate, total = one_run(run, args.jobs, args.paddles)
        locks.append(lock_rate)
        unlocks.append(unlock_rate)
        print(
            f"run {run + 1}: {args.jobs} jobs, {total} nodes: {lock_rate:,.0f} node locks/s, "
            f"{unlock_rate:,.0f} node unlocks/s"
        )
    print(
        f"median of {args.runs} runs: {statistics.median(locks):,.0f} node locks/s, "
        f"{statistics.median(unlocks):,.0f} node unlocks/s"
        + ("" if args.paddles else " (target >= 2,000 node locks/s)")
    )


if __name__ == "__main__":
    main()
