"""Load campaign: a big backlog over many tubes and nodes, for simulated hours.

The real `Dispatcher`, solver, validator, SQLite queue store (the embedded
queue), SQLite inventory and journal; only time and the jobs' processes are
simulated (`optialloc.sim.adapters.SimClock`, `SimRunner`): a tick every
`--tick-s` simulated seconds, jobs run 5-40 simulated minutes, and the queue
is topped up after every tick so the backlog stays at `--queued`.

Verdict: no job started twice, no node given to two running jobs, every
started job ends and settles (journal open rows = running jobs), memory
flat (the median RSS of the last quarter of ticks at most 10% + 64 MiB over
the second quarter's). Figures: ticks, starts, tick wall median and p99,
RSS first/last.

Usage: nice -n 10 python scripts/campaign_load.py [--queued 100000] [--nodes 3000]
       [--tubes 6] [--minutes 60] [--tick-s 10] [--seed 0]
Exit status 1 on any loss. (A full hour at 100,000 queued takes a long time on a
shared 2-core machine: docs/reliability.md says which run its figures come from.)
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from optialloc.dispatch.context import DispatcherSettings
from optialloc.dispatch.dispatcher import Dispatcher
from optialloc.dispatch.journal import Journal
from optialloc.domain import Node
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.policy import default_policy
from optialloc.queue.db import NewJob
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.sim.adapters import SimClock, SimRunner
from optialloc.teuthology import dump_body

ORIGIN = datetime(2026, 12, 1, tzinfo=UTC)


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _nodes(count: int, tubes: list[str]) -> list[Node]:
    return [
        Node(f"{tubes[i % len(tubes)]}{i:05d}", tubes[i % len(tubes)], os_type="ubuntu")
        for i in range(count)
    ]


def _bodies(rng: random.Random, count: int, tubes: list[str], start: int) -> list[NewJob]:
    out = []
    now = time.time()
    for i in range(start, start + count):
        tube = rng.choice(tubes)
        body = {
            "name": f"run-{i // 200}",
            "owner": f"scheduled_u{i % 40}@x",
            "machine_type": tube,
            "priority": rng.choice((50, 100, 1000)),
            "roles": [["osd"]] * rng.choice((1, 1, 2, 3)),
            "description": f"suite/{i % 300}",
        }
        out.append(NewJob(tube=tube, body=dump_body(body), priority=body["priority"],
                          ttr=86400, queued_at=now))  # fmt: skip
    return out


def run(queued: int, nodes: int, tubes_n: int, minutes: float, tick_s: float, seed: int) -> int:
    rng = random.Random(seed)
    tubes = [f"type{k}" for k in range(tubes_n)]
    with tempfile.TemporaryDirectory(prefix="optialloc-load-") as tmp:
        root = Path(tmp)
        clock = SimClock(ORIGIN)
        queue = EmbeddedQueue(str(root / "queue.sqlite"))
        inventory = EmbeddedInventory(str(root / "inventory.sqlite"), "optialloc@load")
        inventory.import_nodes(_nodes(nodes, tubes))
        journal = Journal(str(root / "journal.sqlite"))
        runtimes: dict[str, float] = {}
        runner = SimRunner(clock, runtimes)
        dispatcher = Dispatcher(
            queue=queue, inventory=inventory, runner=runner, clock=clock,  # type: ignore[arg-type]
            policy=default_policy(), journal=journal,
            settings=DispatcherSettings(archive_base=str(root / "archive")),
        )  # fmt: skip
        put_start = time.monotonic()
        made = 0
        for start in range(0, queued, 5000):
            batch = _bodies(rng, min(5000, queued - start), tubes, made)
            for job_id in queue.store.insert(batch):
                runtimes[job_id] = rng.uniform(300, 2400)
            made += len(batch)
        put_s = time.monotonic() - put_start
        queue.validator.wait(600)
        ends: dict[str, float] = {}
        started_once: set[str] = set()
        twice: list[str] = []
        busy: dict[str, str] = {}  # node -> job
        double_booked = 0
        walls: list[float] = []
        rss: list[float] = []
        starts = 0
        sim_s = 0.0
        while sim_s < minutes * 60:
            sim_s += tick_s
            clock.set(sim_s)
            for job_id, end in list(ends.items()):
                if end <= sim_s:
                    runner.finish(job_id)
                    del ends[job_id]
            t0 = time.perf_counter()
            report = dispatcher.tick()
            walls.append(time.perf_counter() - t0)
            rss.append(rss_mib())
            for job_id, names in runner.launched:
                if job_id in started_once:
                    twice.append(job_id)
                started_once.add(job_id)
                ends[job_id] = sim_s + runtimes[job_id]
                for name in names:
                    if busy.get(name) in ends:
                        double_booked += 1
                    busy[name] = job_id
            starts += len(runner.launched)
            runner.launched.clear()
            # top the backlog up to `queued` (as many arrivals as starts)
            if report.started:
                batch = _bodies(rng, len(report.started), tubes, made)
                for job_id in queue.store.insert(batch):
                    runtimes[job_id] = rng.uniform(300, 2400)
                made += len(batch)
        open_rows = len(journal.open_rows())
        running = len(dispatcher.tracked_rows())
        journal.close()
        queue.close()
        inventory.close()
    q = len(walls) // 4 or 1
    early = statistics.median(rss[q : 2 * q] or rss)
    late = statistics.median(rss[-q:])
    flat = late <= early * 1.10 + 64
    p99 = sorted(walls)[min(len(walls) - 1, int(len(walls) * 0.99))]
    print(
        f"load campaign: {queued} queued over {tubes_n} tubes, {nodes} nodes, "
        f"{minutes:.0f} simulated min at a tick every {tick_s:.0f} s: {len(walls)} ticks, "
        f"{starts} starts; tick wall median {statistics.median(walls):.2f} s, p99 {p99:.2f} s; "
        f"RSS 2nd quarter {early:.0f} MiB, last quarter {late:.0f} MiB "
        f"({'flat' if flat else 'GROWING'}); initial put {put_s:.1f} s"
    )
    losses = len(twice) + double_booked + (open_rows != running) + (not flat)
    print(
        f"losses: started twice {len(twice)}, nodes double-booked {double_booked}, "
        f"open rows {open_rows} vs running {running}, memory {'flat' if flat else 'growing'}"
    )
    return 1 if losses else 0


def main() -> int:
    logging.getLogger("optialloc").setLevel(logging.ERROR)  # it prints its own lines
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=3000)
    parser.add_argument("--tubes", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--tick-s", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    return run(args.queued, args.nodes, args.tubes, args.minutes, args.tick_s, args.seed)


if __name__ == "__main__":
    sys.exit(main())
