"""Take the Snapshot a tick looks at, from the ports; and the live lab's snapshot from a config.

`take_snapshot` reads the queue's pending jobs, the inventory's nodes and the
paused tubes, adds the running jobs and the owners' decayed usage it is
given, and stamps them with the clock: it is what `Dispatcher.tick` solves.
`live_snapshot(config)` builds the same from the configured backends and the
journal (running jobs, usage) without dispatching anything, for
`optialloc plan --dry-run` on the live lab and `--dump-snapshot`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import timedelta

from optialloc.domain import RunningJob, Snapshot
from optialloc.ports import Clock, Inventory, JobQueue


def take_snapshot(
    queue: JobQueue,
    inventory: Inventory,
    running: Sequence[RunningJob],
    clock: Clock,
    usage: Mapping[str, float] | None = None,
    runtime_estimates: Mapping[str, float] | None = None,
) -> Snapshot:
    """The lab as the dispatcher sees it now: pending jobs, every node, running jobs, usage
    and the runtime estimates learned so far (by job description)."""
    pending = tuple(queue.pending())
    nodes = tuple(inventory.nodes())
    paused = queue.paused_tubes()
    return Snapshot(
        taken_at=clock.now(),
        nodes=nodes,
        queue=pending,
        running=tuple(running),
        paused_tubes=frozenset(paused),
        usage=dict(usage or {}),
        runtime_estimates=runtime_estimates if runtime_estimates is not None else {},
    )


def live_snapshot(config: object) -> Snapshot:
    """Snapshot of the lab `config` (an `optialloc.config.Config`) points at; read-only."""
    from optialloc.clock import RealClock
    from optialloc.config import Config
    from optialloc.dispatch.journal import JOURNAL_FILE, Journal
    from optialloc.dispatch.runtimes import RUNTIMES_FILE, RuntimeHistory
    from optialloc.dispatch.usage import HISTORY_S, UsageMeter
    from optialloc.inventory import open_inventory
    from optialloc.queue import open_queue

    assert isinstance(config, Config)
    running: list[RunningJob] = []
    meter = UsageMeter()
    journal_path = os.path.join(config.state_dir, JOURNAL_FILE)
    if os.path.exists(journal_path):
        journal = Journal(journal_path)
        try:
            meter.load(journal.finished_since(RealClock().now() - timedelta(seconds=HISTORY_S)))
            for row in journal.open_rows():
                if row.state in ("locked", "launching", "running"):
                    started = row.started_at or row.created_at
                    running.append(RunningJob(row.job, row.nodes, started))
        finally:
            journal.close()
    estimates: Mapping[str, float] = {}
    runtimes_path = os.path.join(config.state_dir, RUNTIMES_FILE)
    if os.path.exists(runtimes_path):
        history = RuntimeHistory(runtimes_path)
        estimates = history.estimates()
        history.close()
    queue = open_queue(config, read_only=True)  # peeks at beanstalkd, moves nothing
    inventory = open_inventory(config)
    try:
        clock = RealClock()
        return take_snapshot(
            queue,
            inventory,
            running,
            clock,
            usage=meter.at(clock.now(), running),
            runtime_estimates=estimates,
        )
    finally:
        queue.close()
        close = getattr(inventory, "close", None)
        if close is not None:
            close()
