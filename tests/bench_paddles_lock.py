"""Benchmark: lock 100 nodes through paddles with 20 ms of latency on every request.

Not collected by pytest (no test_ prefix). Run:

    python tests/bench_paddles_lock.py [--runs 5] [--nodes 100] [--latency-ms 20]

Against the paddles look-alike on loopback (tests/paddles_server.py, paddles'
own lock rules, HTTP/1.1 keep-alive) with `--latency-ms` added to every
request, as a paddles across a network or busy with PostgreSQL is. Each run
locks `--nodes` nodes the way a tick does when a nightly run ends and many
nodes come free at once, then releases them:

- `tick`: 25 jobs of 4 nodes in one `lock_each` call (the dispatcher's path);
- `one job`: a single job of all the nodes;
- `serial`: the same 25 jobs with one request in flight at a time
  (`workers=1`): what locking one node at a time costs, for comparison.

Each lock is a read and a `PUT /nodes/<name>/lock` per node, all-or-nothing
per job. Prints each run and the median; the target is `tick` <= 2 s for 100
nodes at 20 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

from paddles_server import FakePaddles

from optialloc.inventory.paddles import PaddlesInventory
from optialloc.inventory.paddles_client import PaddlesClient

OWNERS = ("scheduled_alice@teuth", "scheduled_bob@teuth", "scheduled_carol@teuth")


def one_run(nodes: int, latency_s: float, mode: str) -> tuple[float, float]:
    """(seconds to lock, seconds to unlock) `nodes` nodes in `mode`."""
    with FakePaddles() as paddles:
        names = [f"smithi{i:04d}" for i in range(1, nodes + 1)]
        for name in names:
            paddles.add_node(name, "smithi", os_type="ubuntu", os_version="22.04")
        paddles.delay_s = latency_s
        workers = 1 if mode == "serial" else 16
        inventory = PaddlesInventory(PaddlesClient(paddles.url), "optialloc@bench", workers=workers)
        size = nodes if mode == "one job" else 4
        jobs = [
            (names[i : i + size], f"/archive/bench/{i // size}", OWNERS[(i // size) % 3])
            for i in range(0, nodes, size)
        ]
        started = time.perf_counter()
        results = inventory.lock_each(jobs)
        locked_s = time.perf_counter() - started
        assert all(isinstance(r, list) for r in results), results
        assert len(paddles.locked_nodes()) == nodes
        started = time.perf_counter()
        for job_names, description, owner in jobs:
            inventory.unlock(job_names, description, owner)
        unlocked_s = time.perf_counter() - started
        assert paddles.locked_nodes() == {}
        inventory.close()
    return locked_s, unlocked_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    latency_s = args.latency_ms / 1000
    print(f"{args.nodes} nodes, {args.latency_ms:.0f} ms per request, {args.runs} runs")
    for mode in ("tick", "one job", "serial"):
        runs = [one_run(args.nodes, latency_s, mode) for _ in range(args.runs)]
        locks = [lock for lock, _ in runs]
        unlocks = [unlock for _, unlock in runs]
        print(
            f"{mode:8s} lock: "
            + " ".join(f"{s:.2f}" for s in locks)
            + f" s; median {statistics.median(locks):.2f} s"
            + f" | unlock (one call per job): median {statistics.median(unlocks):.2f} s"
        )


if __name__ == "__main__":
    main()
