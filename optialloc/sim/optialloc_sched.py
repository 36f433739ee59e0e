"""optialloc inside the engine: the real `Dispatcher.tick()` over the simulated ports.

Nothing of the scheduling logic is re-implemented here: each decision point
sets the simulated clock and calls `Dispatcher.tick()`, which polls the
`SimRunner` (jobs past their runtime end, nodes are unlocked), snapshots the
`SimQueue` and `SimInventory`, solves with the policy, validates, and commits
(claim, lock, launch, delete) exactly as `serve` does. The engine then reads
what was launched from the runner.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from optialloc.dispatch.dispatcher import Dispatcher, DispatcherSettings
from optialloc.domain import Node, Plan
from optialloc.policy import Policy
from optialloc.sim.adapters import SimClock, SimInventory, SimJournal, SimQueue, SimRunner
from optialloc.sim.engine import ClusterState, Launch
from optialloc.sim.model import JobRecord, SimJob, TickStat
from optialloc.sim.workload import ensure_body
from optialloc.teuthology import dump_body, parse_job

log = logging.getLogger(__name__)

#: `locked_by` of nodes a snapshot's running jobs hold (not the dispatcher's own).
PRELOAD_LOCKER = "snapshot@sim"


class OptiallocScheduler:
    """An engine `Scheduler` backed by a real `Dispatcher` (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        policy: Policy,
        nodes: Sequence[Node],
        jobs: Sequence[SimJob],
        origin: datetime,
        preload: Sequence[JobRecord] = (),
        settings: DispatcherSettings | None = None,
        dump_rejected: str | None = None,
    ) -> None:
        self.name = name
        self.dump_rejected = dump_rejected
        self.ticks: list[TickStat] = []
        self.notes: list[str] = []
        self.origin = origin
        self.clock = SimClock(origin)
        self.queue = SimQueue(self.clock)
        # the lab as it is free: a snapshot's own locks are replaced by `preload`
        free_nodes = [
            Node(
                n.name,
                n.machine_type,
                n.up,
                os_type=n.os_type,
                os_version=n.os_version,
                arch=n.arch,
            )
            for n in nodes
        ]
        self.inventory = SimInventory(free_nodes)
        self.runner = SimRunner(self.clock, {j.job_id: j.runtime for j in jobs})
        self.journal = SimJournal()
        self.dispatcher = Dispatcher(
            queue=self.queue,
            inventory=self.inventory,
            runner=self.runner,
            clock=self.clock,
            policy=policy,
            journal=self.journal,
            settings=settings or DispatcherSettings(archive_base="/nonexistent/optialloc-sim"),
        )
        self.jobs = {j.job_id: j for j in jobs}
        self.node_type = {n.name: n.machine_type for n in nodes}
        self._preloaded: dict[str, tuple[str, ...]] = {}
        for record in preload:
            self.inventory.lock(
                record.nodes, f"preload/{record.job.job_id}", locked_by=PRELOAD_LOCKER
            )
            self._preloaded[record.job.job_id] = record.nodes
        self.failed: list[tuple[str, str]] = []
        self.rejected = 0
        #: the plan of the last decision (None before the first, or when a tick solved nothing)
        self.last_plan: Plan | None = None

    def arrive(self, job: SimJob, now: float) -> None:
        body = ensure_body(job)
        parsed = parse_job(
            body, job_id=job.job_id, queued_at=self.origin + timedelta(seconds=job.submit)
        )
        self.queue.add(parsed, dump_body(body) if job.body is None else "")

    def complete(self, record: JobRecord, now: float) -> None:
        self.runner.finish(record.job.job_id)
        nodes = self._preloaded.pop(record.job.job_id, None)
        if nodes is not None:  # not the dispatcher's job: its owner unlocks it
            self.inventory.unlock(nodes, f"preload/{record.job.job_id}", locked_by=PRELOAD_LOCKER)

    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
        self.clock.set(now)
        report = self.dispatcher.tick()
        plan = self.last_plan = report.plan
        if plan is not None:
            self.ticks.append(
                TickStat(
                    now,
                    plan.solver.wall_s,
                    plan.solver.status,
                    plan.solver.gap,
                    len(report.started),
                )
            )
        for job_id, reason in report.failed:
            self.failed.append((job_id, reason))
            if len(self.notes) < 20:
                self.notes.append(f"t={now:.0f} s: job {job_id} not started: {reason}")
        if report.rejected:
            self.rejected += 1
            if len(self.notes) < 20:
                self.notes.append(f"t={now:.0f} s: plan rejected: {'; '.join(report.rejected[:3])}")
            self._dump(report.tick, report.rejected)
        launches = []
        for job_id, names in self.runner.launched:
            job = self.jobs[job_id]
            launches.append(
                Launch(job, self.node_type[names[0]] if names else job.machine_types[0], names)
            )
        self.runner.launched.clear()
        return launches

    def _dump(self, tick: int, violations: Sequence[str]) -> None:
        """Save the rejected tick's snapshot for `optialloc plan --snapshot` (first 20 only)."""
        if not self.dump_rejected or self.rejected > 20:
            return
        from optialloc.dispatch.snapshotter import take_snapshot
        from optialloc.snapshots.io import dump_snapshot

        # nothing started in a rejected tick: the state now is the state it solved
        snap = take_snapshot(self.queue, self.inventory, self.dispatcher.running_jobs(), self.clock)
        Path(self.dump_rejected).mkdir(parents=True, exist_ok=True)
        target = Path(self.dump_rejected) / f"rejected-tick-{tick}.yaml"
        header = "what-if: plan rejected by the validator: " + "; ".join(violations[:3])
        dump_snapshot(snap, target, runtimes=self.runner.runtimes, header=header)
        log.warning("rejected plan's snapshot saved to %s", target)

    def queued(self) -> int:
        return self.queue.pending_count()
