"""The demo: queue a few dozen mixed jobs on the embedded demo lab and serve them to the end.

`run_demo` makes (or takes) a state dir, puts jobs of different sizes,
priorities, machine types and owners into the embedded queue, runs the real
`serve` loop (`--exit-on-empty-queue`) with a command runner that sleeps
each job's `duration` (0.5-3 s), shows progress on stderr (a bar on a
terminal, a line every 10 s otherwise), and returns a `DemoSummary` computed
from the dispatcher's journal. The CLI prints it. The nodes are the shipped
demo lab (`optialloc/data/labs/demo.yaml`).
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from optialloc.cli.progress import progress_bar
from optialloc.config import Config
from optialloc.dispatch.context import DEFERRED
from optialloc.dispatch.dispatcher import TickReport
from optialloc.dispatch.journal import JOURNAL_FILE, Journal
from optialloc.dispatch.serve import serve
from optialloc.queue import open_queue
from optialloc.teuthology import dump_body, tube_for

log = logging.getLogger(__name__)

OWNERS = ("scheduled_alice@lab", "scheduled_bob@lab", "scheduled_carol@lab", "scheduled_dave@lab")
PRIORITIES = (50, 75, 100, 200, 1000)
#: (machine_type, how often) for the demo lab: 8 smithi, 3 usable mira, 2 gibba
TYPES = (("smithi", 6), ("mira", 2), ("smithi,mira", 1), ("gibba", 1))


def demo_bodies(count: int, seed: int) -> list[dict[str, object]]:
    """`count` teuthology-like bodies in all: `count - 1` test jobs and one `last_in_suite` job.

    (A single body is a test job: a suite needs a test before its last job.)
    """
    rng = random.Random(seed)
    kinds = [t for t, weight in TYPES for _ in range(weight)]
    bodies: list[dict[str, object]] = []
    for _i in range(count - 1 if count > 1 else count):
        owner = rng.choice(OWNERS)
        machine_type = rng.choice(kinds)
        most = 1 if machine_type == "gibba" else 3
        nodes = rng.choice([1, 1, 2, 2, 3][: 5 if most == 3 else 2])
        priority = rng.choice(PRIORITIES)
        run = (
            f"{owner.split('_')[1].split('@')[0]}-demo-{machine_type.replace(',', '+')}-p{priority}"
        )
        bodies.append(
            {
                "name": run,
                "owner": owner,
                "priority": priority,
                "machine_type": machine_type,
                "roles": [[f"osd.{k}"] for k in range(nodes)],
                "description": f"demo/{machine_type}/{nodes}-node",
                "duration": f"{rng.uniform(0.5, 3.0):.1f}",
                "last_in_suite": False,
            }
        )
    if count > 1:
        first = bodies[0]
        bodies.append(
            {
                **first,
                "roles": [],
                "last_in_suite": True,
                "duration": "0.2",
                "description": "demo/last_in_suite (results mail)",
            }
        )
    return bodies


@dataclass
class DemoSummary:
    """What the demo run did. Times in seconds, utilization in percent."""

    state_dir: str
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    wall_s: float = 0.0
    mean_wait_s: float = 0.0
    max_wait_s: float = 0.0
    utilization_pct: float = 0.0
    ticks: int = 0
    per_owner: dict[str, tuple[int, float, float]] = field(
        default_factory=dict
    )  # jobs, mean wait, node-s


def demo_config(state_dir: str) -> Config:
    return Config(
        state_dir=state_dir,
        queue_backend="embedded",
        runner="command",
        runner_command="sleep {body[duration]}",
        tick_seconds=0.5,
        locked_by="optialloc@demo",
        max_job_time=600,
    )


def summarize(state_dir: str, up_nodes: int, ticks: int) -> DemoSummary:
    """Read the journal of a finished demo into a `DemoSummary`."""
    journal = Journal(os.path.join(state_dir, JOURNAL_FILE))
    try:
        rows = [r for r in journal.all_rows() if r.started_at is not None]
    finally:
        journal.close()
    summary = DemoSummary(state_dir=state_dir, ticks=ticks)
    if not rows:
        return summary
    waits: list[float] = []
    owner: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    first: datetime = min(r.job.queued_at for r in rows)
    last: datetime = max(r.updated_at for r in rows)
    busy = 0.0
    for row in rows:
        assert row.started_at is not None
        wait = max(0.0, (row.started_at - row.job.queued_at).total_seconds())
        run = max(0.0, (row.updated_at - row.started_at).total_seconds())
        waits.append(wait)
        busy += run * len(row.nodes)
        stats = owner[row.job.owner]
        stats[0] += 1
        stats[1] += wait
        stats[2] += run * len(row.nodes)
        if row.state == "done" and row.exit_status == 0:
            summary.succeeded += 1
        else:
            summary.failed += 1
    summary.jobs = len(rows)
    summary.wall_s = (last - first).total_seconds()
    summary.mean_wait_s = sum(waits) / len(waits)
    summary.max_wait_s = max(waits)
    if summary.wall_s > 0 and up_nodes:
        summary.utilization_pct = 100.0 * busy / (up_nodes * summary.wall_s)
    summary.per_owner = {k: (int(v[0]), v[1] / v[0], v[2]) for k, v in sorted(owner.items())}
    return summary


def run_demo(
    jobs: int = 36, seed: int = 1, state_dir: str | None = None, progress: bool = True
) -> DemoSummary:
    """Queue `jobs` demo jobs (plus one last_in_suite job) and serve them all (see module doc)."""
    state_dir = state_dir or tempfile.mkdtemp(prefix="optialloc-demo-")
    config = demo_config(state_dir)
    os.makedirs(state_dir, exist_ok=True)
    queue = open_queue(config)
    try:
        bodies = demo_bodies(jobs, seed)
        for body in bodies:
            queue.put(tube_for(str(body["machine_type"])), dump_body(body), int(body["priority"]))  # type: ignore[call-overload]
    finally:
        queue.close()
    total = len(bodies)
    bar = progress_bar(total, "demo jobs", "job") if progress else None
    ticks = [0]

    def on_tick(report: TickReport) -> None:
        ticks[0] += 1
        # a deferred start stays queued: it is not done
        failed = [f for f in report.failed if not f[1].startswith(DEFERRED)]
        done = len(report.finished) + len(failed)
        if bar is None:
            return
        if done:
            bar.update(done)
        bar.set_postfix(
            running=report.running, waiting=max(0, report.pending - len(report.started))
        )

    try:
        serve(config, exit_on_empty_queue=True, on_tick=on_tick)
    finally:
        if bar is not None:
            bar.close()
    from optialloc.inventory import open_inventory

    inventory = open_inventory(config)
    up = sum(1 for node in inventory.nodes() if node.up)
    close = getattr(inventory, "close", None)
    if close is not None:
        close()
    return summarize(state_dir, up, ticks[0])


def format_summary(summary: DemoSummary, kept: bool = True) -> str:
    """The summary as the CLI prints it (every number with its unit)."""
    lines = [
        f"demo finished: {summary.jobs} jobs run ({summary.succeeded} passed, "
        f"{summary.failed} failed) in {summary.wall_s:.1f} s over {summary.ticks} ticks",
        f"wait: mean {summary.mean_wait_s:.1f} s, max {summary.max_wait_s:.1f} s",
        f"utilization: {summary.utilization_pct:.0f} % of up nodes (node-seconds busy / available)",
        "per owner:",
    ]
    for owner, (count, wait, node_s) in summary.per_owner.items():
        lines.append(
            f"  {owner:<24} {count:>3} jobs  mean wait {wait:5.1f} s  {node_s:6.1f} node-s"
        )
    if kept:
        lines.append(f"state (journal, queue, archive): {summary.state_dir}")
    else:
        lines.append("state removed (pass --keep to keep it)")
    return "\n".join(lines)
