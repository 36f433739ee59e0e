"""Benchmark the dispatcher (not collected by pytest): launches per second and tick latency.

Real beanstalkd (started here on a free loopback port), the embedded
inventory with 1,000 nodes, the command runner with `true` (jobs exit at
once), the real solver and validator, a journal on disk.

1. launches: 10,000 queued 1-4-node jobs; tick until all have been launched.
   Figure: jobs launched / wall seconds (ingest from beanstalkd included).
2. tick latency: 20,000 queued jobs on a lab whose nodes are mostly held by
   other users (20 free), so each tick starts a few jobs, as in steady state
   (measured once the background full parse of the ingested bodies is done).
   Figure: median and p95 wall time of a whole tick (watch, snapshot, solve,
   validate, commit, launch), and the medians of its solver, validator and
   commit (claim + lock + launch) phases; then, measured apart, the median
   tick that also works out and stores every waiting job's position and
   reason (with this many queued, the dispatcher does that at most every
   `positions_every_s`, 5 s).

Usage: python tests/bench_dispatcher.py [--runs 3] [--jobs 10000] [--queued 20000]
Prints the median over the runs for each figure.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import beanstalkc
import yaml
from bench_queue import start_beanstalkd  # one way to start it for every benchmark

from optialloc.clock import RealClock
from optialloc.config import Config
from optialloc.dispatch.dispatcher import Dispatcher, DispatcherSettings
from optialloc.dispatch.journal import Journal
from optialloc.domain import Node
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.policy import default_policy
from optialloc.queue import open_queue
from optialloc.runners import CommandRunner
from optialloc.teuthology import dump_body

TYPES = (("smithi", 600), ("mira", 250), ("gibba", 150))


def lab() -> list[Node]:
    return [
        Node(f"{t}{i:04d}", t, os_type="ubuntu", os_version="22.04", arch="x86_64")
        for t, n in TYPES
        for i in range(n)
    ]


def put_jobs(port: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    conn = beanstalkc.Connection("127.0.0.1", port, parse_yaml=yaml.safe_load)
    # As teuthology-suite queues them: a run of 200 jobs has one owner and one
    # priority; its jobs differ in machine type and node count.
    run_priority = [rng.choice((75, 100, 200, 1000)) for _ in range(count // 200 + 1)]
    for i in range(count):
        machine_type = rng.choices([t for t, _ in TYPES], weights=[n for _, n in TYPES])[0]
        nodes = rng.randint(1, 4)
        priority = run_priority[i // 200]
        body = {
            "name": f"bench-run-{i // 200}",
            "owner": f"scheduled_u{(i // 200) % 7}@lab",
            "machine_type": machine_type,
            "priority": priority,
            "roles": [[f"osd.{k}"] for k in range(nodes)],
        }
        conn.use(machine_type)
        conn.put(dump_body(body), priority=priority, ttr=86400)
    conn.close()


def build(tmp: Path, port: int, held_by_others: int = 0) -> tuple[Dispatcher, Journal]:
    state = tmp / "state"
    config = Config(state_dir=str(state), queue_backend="beanstalk", queue_port=port)
    inventory = EmbeddedInventory(str(state / "inventory.sqlite"), "optialloc@bench")
    nodes = lab()
    inventory.import_nodes(nodes)
    if held_by_others:
        other = EmbeddedInventory(str(state / "inventory.sqlite"), "someone@else")
        other.lock([n.name for n in nodes[:held_by_others]], "held by other users")
        other.close()
    journal = Journal(str(state / "journal.sqlite"))
    queue = open_queue(config)
    dispatcher = Dispatcher(
        queue=queue,
        inventory=inventory,
        runner=CommandRunner("true"),
        clock=RealClock(),
        policy=default_policy(),
        journal=journal,
        settings=DispatcherSettings(archive_base=str(tmp / "archive")),
    )
    dispatcher.reconcile()
    return dispatcher, journal


def bench_launches(jobs: int, seed: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="optialloc-bench-"))
    beanstalkd, port = start_beanstalkd(tmp)
    try:
        put_jobs(port, jobs, seed)
        dispatcher, _ = build(tmp, port)
        started = 0
        t0 = time.perf_counter()
        while started < jobs:
            report = dispatcher.tick()
            started += len(report.started)
            if not report.started and not dispatcher.handles() and report.pending == 0:
                break
        elapsed = time.perf_counter() - t0
        return started / elapsed
    finally:
        beanstalkd.kill()
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class TickFigures:
    """One tick-latency run: medians (p95) in seconds."""

    median: float
    p95: float
    solver: float
    validate: float
    commit: float
    launched: int
    explained: int  # of the timed ticks, how many also worked out every waiting job
    explaining: float  # median tick that works out every waiting job's position and reason


def bench_ticks(queued: int, seed: int, ticks: int = 30, explaining_ticks: int = 5) -> TickFigures:
    tmp = Path(tempfile.mkdtemp(prefix="optialloc-bench-"))
    beanstalkd, port = start_beanstalkd(tmp)
    try:
        put_jobs(port, queued, seed)
        dispatcher, _ = build(tmp, port, held_by_others=sum(n for _, n in TYPES) - 20)
        dispatcher.tick()  # the first tick ingests the whole beanstalkd backlog: not steady state
        # ... and starts the background full parse of the 20,000 bodies (another
        # process, ~1 core for a few seconds): steady state begins once it is done.
        validator = getattr(dispatcher.queue, "validator", None)
        if validator is not None:
            validator.wait(300)
        walls, solver, validate, commit, launched, explained = [], [], [], [], 0, 0
        for _ in range(ticks):
            time.sleep(0.02)  # let the last tick's `true` jobs exit
            report = dispatcher.tick()
            walls.append(report.tick_s)
            solver.append(report.solver_s)
            validate.append(report.validate_s)
            commit.append(report.commit_s)
            launched += len(report.started)
            explained += bool(report.plan and report.plan.explained)
        # The ticks that also work out positions and reasons (every positions_every_s
        # with a queue this big): measured on their own, every tick explaining.
        dispatcher.settings = replace(dispatcher.settings, positions_every_s=0.0)
        explaining = []
        for _ in range(explaining_ticks):
            time.sleep(0.02)
            report = dispatcher.tick()
            assert report.plan is not None and report.plan.explained
            explaining.append(report.tick_s)
        walls.sort()
        return TickFigures(
            median=statistics.median(walls),
            p95=walls[int(0.95 * (len(walls) - 1))],
            solver=statistics.median(solver),
            validate=statistics.median(validate),
            commit=statistics.median(commit),
            launched=launched,
            explained=explained,
            explaining=statistics.median(explaining),
        )
    finally:
        beanstalkd.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--queued", type=int, default=20_000)
    parser.add_argument("--skip-launches", action="store_true", help="only the tick latency part")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rates = []
    for run in range(0 if args.skip_launches else args.runs):
        rates.append(bench_launches(args.jobs, seed=run))
        print(
            f"run {run + 1}: {rates[-1]:.0f} launches/s ({args.jobs} jobs of 1-4 nodes, 1000 nodes)"
        )
    if rates:
        print(f"launches: median {statistics.median(rates):.0f} launches/s over {args.runs} runs")
    runs = []
    for run in range(args.runs):
        f = bench_ticks(args.queued, seed=100 + run)
        runs.append(f)
        print(
            f"run {run + 1}: tick median {f.median * 1000:.0f} ms, p95 {f.p95 * 1000:.0f} ms, "
            f"solver median {f.solver * 1000:.0f} ms, validator {f.validate * 1000:.0f} ms, "
            f"commit {f.commit * 1000:.0f} ms ({f.launched} jobs started in 30 ticks, "
            f"{f.explained} of them explained); explaining tick {f.explaining * 1000:.0f} ms"
        )

    def med(name: str) -> float:
        return statistics.median(getattr(f, name) for f in runs) * 1000

    print(
        f"tick latency with {args.queued} queued: "
        f"median {med('median'):.0f} ms, p95 {med('p95'):.0f} ms, "
        f"solver {med('solver'):.0f} ms, validator {med('validate'):.0f} ms, "
        f"commit {med('commit'):.0f} ms; a tick that also works out every waiting job's "
        f"position and reason (every {DispatcherSettings().positions_every_s:.0f} s): "
        f"{med('explaining'):.0f} ms (medians over {args.runs} runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
