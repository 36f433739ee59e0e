"""Independent check of a Plan against its Snapshot and Policy (no CP-SAT, no solver code).

`validate_plan` returns violations as counting messages ("smithi: plan uses 12
nodes but only 10 are free"); an empty list means the plan is valid. It
re-derives every rule from docs/policy.md on its own: node states and
compatibility, one machine type per job, capacity, paused tubes, last_in_suite,
reservations (held nodes never go to other jobs, except to a job that ends
by its runtime estimate before the reservation's shadow time, with
`reservations.backfill`; see `optialloc.check.backfill`), fairness caps (with
`peers_only`, only against equally or more urgent rivals) and the objective.
Only the weight definition (`optialloc.ranking.job_weight`) is shared with the
solver, because it *is* the definition, and the grouping of the queue by
profile (`optialloc.profiles`: a dict of lists, computed once per
snapshot for both).
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Mapping
from operator import attrgetter

from optialloc.check.backfill import fits as _fits
from optialloc.check.fairness import FairnessRules
from optialloc.check.holds import HoldRules
from optialloc.check.state import CheckState
from optialloc.domain import Job, Plan, Snapshot, WaitReason
from optialloc.policy import Policy
from optialloc.ranking import (
    job_weight_fn,
)

_JOB_ID = attrgetter("job_id")


def plan_objective(
    snapshot: Snapshot, policy: Policy, plan: Plan, by_id: Mapping[str, Job] | None = None
) -> float:
    """Sum of the weights of the plan's started jobs, recomputed from the policy.

    `by_id`, the snapshot's queue by job id, saves rebuilding it when the caller has it.
    """
    if by_id is None:
        by_id = dict(zip(map(_JOB_ID, snapshot.queue), snapshot.queue, strict=True))
    weight = job_weight_fn(snapshot.taken_at, policy, snapshot.usage, snapshot.runtime_estimates)
    return sum(weight(by_id[s.job_id]) for s in plan.starts if s.job_id in by_id)


class _Check(HoldRules, FairnessRules):
    def __init__(self, snapshot: Snapshot, policy: Policy, plan: Plan) -> None:
        CheckState.__init__(self, snapshot, policy, plan)
        self.reserved = self._reserved()

    def run(self) -> list[str]:
        self.coverage()
        self.starts()
        self.capacity()
        self.holds()
        self.fairness("owner", self.p.fairness.owner_max_share)
        self.fairness("run", self.p.fairness.run_max_share)
        self.objective()
        return self.out

    def coverage(self) -> None:
        if not self.plan.explained:
            self._starts_once()
            return
        waiting = self.plan.waiting
        waiting_list = [w.job_id for w in waiting]
        listed = [s.job_id for s in self.plan.starts] + waiting_list
        waiting_ids = set(waiting_list)
        listed_set = waiting_ids.union(s.job_id for s in self.plan.starts)
        # Fast path (every valid plan): each queued job listed once, nothing else.
        if len(listed_set) != len(listed) or listed_set != self.jobs.keys():
            self._each_queued_once(listed, "starts and waiting")
            missing = [jid for jid in self.jobs if jid not in listed_set]
            if missing:
                self.out.append(
                    f"{len(missing)} queued job(s) missing from the plan, e.g. {missing[0]}"
                )
        positions = {w.position for w in waiting}
        if positions != set(range(1, len(waiting) + 1)):
            self.out.append(f"waiting positions are not 1..{len(positions)}")
        said_invalid = {w.job_id for w in waiting if w.reason is WaitReason.INVALID}
        wrong = (said_invalid ^ self.invalid_ids) & waiting_ids & self.jobs.keys()
        if wrong:
            reason_of = {w.job_id: w.reason for w in waiting}
            for jid in sorted(wrong):
                valid = jid not in self.invalid_ids
                self.out.append(
                    f"job {jid}: reason {reason_of[jid].value} but the job is "
                    f"{'valid' if valid else 'invalid'} for this lab"
                )

    def _starts_once(self) -> None:
        """An unexplained plan (no `waiting`): each start is a queued job, listed once."""
        if self.plan.waiting:
            self.out.append("plan says it is not explained but lists waiting jobs")
        self._each_queued_once([s.job_id for s in self.plan.starts], "starts")

    def _each_queued_once(self, listed: list[str], where: str) -> None:
        """Each id in `listed` (the plan's `where`) is a queued job, listed once."""
        for jid, count in Counter(listed).items():
            if jid not in self.jobs:
                self.out.append(f"job {jid}: in the plan but not in the snapshot's queue")
            elif count > 1:
                self.out.append(f"job {jid}: appears {count} times in {where} (must be once)")

    def starts(self) -> None:
        for start in self.plan.starts:
            job = self.jobs.get(start.job_id)
            if job is None:
                continue
            if job.tube in self.s.paused_tubes:
                self.out.append(f"job {job.job_id}: started but its tube {job.tube} is paused")
            elif job.last_in_suite and self.pending_runs[job.run] > 0:
                self.out.append(
                    f"job {job.job_id}: last_in_suite started while {self.pending_runs[job.run]} "
                    f"other job(s) of run {job.run} are queued or running"
                )
            if len(start.nodes) != job.nodes_needed:
                self.out.append(
                    f"job {job.job_id}: given {len(start.nodes)} nodes but needs {job.nodes_needed}"
                )
            types = set()
            for name in start.nodes:
                node = self.nodes.get(name)
                if node is None:
                    self.out.append(f"job {job.job_id}: node {name} does not exist")
                    continue
                types.add(node.machine_type)
                self._node_usable(name, node, f"job {job.job_id}")
                if not _fits(job, node, self.p):
                    self.out.append(
                        f"job {job.job_id}: node {name} ({node.machine_type} {node.os_type} "
                        f"{node.os_version} {node.arch}) does not fit the job's types/OS/arch"
                    )
            if len(types) > 1:
                self.out.append(
                    f"job {job.job_id}: nodes from {len(types)} machine types "
                    f"({', '.join(sorted(types))})"
                )
        uses = Counter(n for s in self.plan.starts for n in s.nodes)
        uses.update(h.node for h in self.plan.held)
        for name, count in sorted(uses.items()):
            if count > 1:
                self.out.append(f"node {name}: used {count} times by starts and holds")

    def capacity(self) -> None:
        free = Counter(n.machine_type for n in self.s.nodes if n.free and n.name not in self.busy)
        used = Counter(
            self.nodes[n].machine_type
            for n in {x for s in self.plan.starts for x in s.nodes}
            | {h.node for h in self.plan.held}
            if n in self.nodes
        )
        for machine_type, count in sorted(used.items()):
            if count > free[machine_type]:
                self.out.append(
                    f"{machine_type}: plan uses {count} nodes "
                    f"but only {free[machine_type]} are free"
                )

    def objective(self) -> None:
        expected = plan_objective(self.s, self.p, self.plan, self.jobs)
        reported = self.plan.solver.objective
        if abs(expected - reported) > 1e-6 * max(1.0, abs(expected)):
            self.out.append(
                f"objective: plan reports {reported:.6f} but its starts weigh {expected:.6f}"
            )


def validate_plan(snapshot: Snapshot, policy: Policy, plan: Plan) -> list[str]:
    """Every violation of the policy's rules in `plan` (empty: valid). Never raises on bad plans."""
    if plan.taken_at != snapshot.taken_at:
        return [
            f"plan taken at {plan.taken_at.isoformat()} is for another snapshot "
            f"(taken at {snapshot.taken_at.isoformat()})"
        ]
    # Same reason as in solve(): many allocations, no cyclic garbage, a big heap.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Check(snapshot, policy, plan).run()
    finally:
        if was_enabled:
            gc.enable()
