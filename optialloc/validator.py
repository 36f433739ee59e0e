"""Independent check of a Plan against its Snapshot and Policy (no CP-SAT, no solver code).

`validate_plan` returns violations as counting messages ("smithi: plan uses 12
nodes but only 10 are free"); an empty list means the plan is valid. It
re-derives every rule from docs/policy.md on its own: node states and
compatibility, one machine type per job, capacity, paused tubes, last_in_suite,
reservations (held nodes never go to other jobs, except to a job that ends
by its runtime estimate before the reservation's shadow time, with
`reservations.backfill`; see `optialloc.backfill_check`), fairness caps (with
`peers_only`, only against equally or more urgent rivals) and the objective.
Only the weight definition (`optialloc.policy.job_weight`) is shared with the
solver, because it *is* the definition.
"""

from __future__ import annotations

import gc
import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from optialloc.backfill_check import fits as _fits
from optialloc.backfill_check import home_type, shadow_time
from optialloc.domain import Job, Node, Plan, Snapshot, WaitReason
from optialloc.policy import (
    Policy,
    dispatch_key,
    effective_priority_fn,
    job_weight_fn,
    reservation_threshold_s,
    runtime_estimate_s,
)


def plan_objective(snapshot: Snapshot, policy: Policy, plan: Plan) -> float:
    """Sum of the weights of the plan's started jobs, recomputed from the policy."""
    by_id = {j.job_id: j for j in snapshot.queue}
    weight = job_weight_fn(snapshot.taken_at, policy, snapshot.usage)
    return sum(weight(by_id[s.job_id]) for s in plan.starts if s.job_id in by_id)


def _can_ever_run(job: Job, snapshot: Snapshot, policy: Policy) -> bool:
    if job.nodes_needed == 0:
        return True
    return any(
        sum(1 for n in snapshot.nodes if n.machine_type == t and _fits(job, n, policy))
        >= job.nodes_needed
        for t in job.machine_types
    )


class _Check:
    def __init__(self, snapshot: Snapshot, policy: Policy, plan: Plan) -> None:
        self.s, self.p, self.plan = snapshot, policy, plan
        self.out: list[str] = []
        self.jobs = {j.job_id: j for j in snapshot.queue}
        self.nodes = {n.name: n for n in snapshot.nodes}
        self.busy = {name for rj in snapshot.running for name in rj.nodes}
        pending = Counter(j.run for j in snapshot.queue if not j.last_in_suite)
        pending.update(rj.job.run for rj in snapshot.running if not rj.job.last_in_suite)
        cache: dict[tuple[object, ...], bool] = {}
        self.valid = {}
        for jid, j in self.jobs.items():
            key = (j.machine_types, j.os_type, j.os_version, j.arch, j.nodes_needed)
            if key not in cache:
                cache[key] = _can_ever_run(j, snapshot, policy)
            self.valid[jid] = cache[key]
        self.eligible = {
            jid: self.valid[jid]
            and j.tube not in snapshot.paused_tubes
            and not (j.last_in_suite and pending[j.run] > 0)
            for jid, j in self.jobs.items()
        }
        self.pending_runs = pending
        # Eligible jobs that need nodes, by what fairness looks at (few distinct profiles).
        self.profiles = Counter(
            (j.owner, j.run, j.machine_types, j.nodes_needed)
            for jid, j in self.jobs.items()
            if j.nodes_needed > 0 and self.eligible[jid]
        )
        self.started = {s.job_id: s for s in plan.starts}
        self._effective: dict[str, float] | None = None
        self.reserved = self._reserved()

    def _reserved(self) -> list[str]:
        rules = self.p.reservations
        if not rules.enabled or rules.max_jobs == 0:
            return []
        ok = [j for jid, j in self.jobs.items() if self.eligible[jid] and j.nodes_needed > 0]
        if rules.priority_scaled:
            # Independent of the solver's grouping: every job against its own threshold
            # (a function of its priority alone, so computed once per distinct priority).
            thresholds: dict[int, float] = {}
            for j in ok:
                if j.priority not in thresholds:
                    thresholds[j.priority] = reservation_threshold_s(j.priority, self.p)
            taken_at = self.s.taken_at
            old = heapq.nsmallest(
                rules.max_jobs,
                (
                    j
                    for j in ok
                    if (taken_at - j.queued_at).total_seconds() >= thresholds[j.priority]
                ),
                key=lambda j: (j.queued_at + timedelta(seconds=thresholds[j.priority]), j.job_id),
            )
        else:
            limit = rules.after_hours * 3600.0
            old = heapq.nsmallest(
                rules.max_jobs,
                (j for j in ok if (self.s.taken_at - j.queued_at).total_seconds() >= limit),
                key=lambda j: (j.queued_at, j.job_id),
            )
        chosen = [j.job_id for j in old]
        if rules.head_of_queue and len(chosen) < rules.max_jobs and ok:
            effective = effective_priority_fn(self.s.taken_at, self.p, self.s.usage)
            head = min(ok, key=lambda j: dispatch_key(j, effective(j)))
            if head.job_id not in chosen:
                chosen.append(head.job_id)
        return chosen

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
        seen = Counter([s.job_id for s in self.plan.starts] + [w.job_id for w in self.plan.waiting])
        for jid, count in seen.items():
            if jid not in self.jobs:
                self.out.append(f"job {jid}: in the plan but not in the snapshot's queue")
            elif count > 1:
                self.out.append(
                    f"job {jid}: appears {count} times in starts and waiting (must be once)"
                )
        missing = [jid for jid in self.jobs if jid not in seen]
        if missing:
            self.out.append(
                f"{len(missing)} queued job(s) missing from the plan, e.g. {missing[0]}"
            )
        positions = {w.position for w in self.plan.waiting}
        if positions != set(range(1, len(self.plan.waiting) + 1)):
            self.out.append(f"waiting positions are not 1..{len(positions)}")
        for w in self.plan.waiting:
            if w.job_id in self.jobs and (w.reason == WaitReason.INVALID) == self.valid[w.job_id]:
                self.out.append(
                    f"job {w.job_id}: reason {w.reason.value} but the job is "
                    f"{'valid' if self.valid[w.job_id] else 'invalid'} for this lab"
                )

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

    def _node_usable(self, name: str, node: Node, who: str) -> None:
        if not node.up:
            self.out.append(f"{who}: node {name} is down")
        elif node.locked:
            self.out.append(f"{who}: node {name} is locked by {node.locked_by or 'somebody'}")
        elif name in self.busy:
            self.out.append(f"{who}: node {name} is busy with a running job")

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

    def holds(self) -> None:
        held: dict[str, list[str]] = defaultdict(list)
        for hold in self.plan.held:
            job = self.jobs.get(hold.for_job_id)
            node = self.nodes.get(hold.node)
            if job is None or node is None:
                self.out.append(f"hold of {hold.node} for {hold.for_job_id}: unknown node or job")
                continue
            if hold.for_job_id not in self.reserved:
                self.out.append(
                    f"node {hold.node} held for job {job.job_id}, which has no reservation"
                )
            if hold.for_job_id in self.started:
                self.out.append(f"node {hold.node} held for job {job.job_id}, which starts now")
            if not _fits(job, node, self.p):
                self.out.append(f"node {hold.node} held for job {job.job_id} but does not fit it")
            self._node_usable(hold.node, node, f"hold for job {job.job_id}")
            held[job.job_id].append(hold.node)
        start_nodes = {n for s in self.plan.starts for n in s.nodes}
        for rank, jid in enumerate(self.reserved):
            if jid in self.started:
                continue
            job = self.jobs[jid]
            mine = held.get(jid, [])
            if len(mine) > job.nodes_needed:
                self.out.append(
                    f"job {jid}: {len(mine)} nodes held but it needs {job.nodes_needed}"
                )
            if len(mine) >= job.nodes_needed:
                continue
            home = self.nodes[mine[0]].machine_type if mine else self._home(job)
            earlier = set(self.reserved[:rank])
            # A backfilled job may use the held nodes of this or of an earlier reservation
            # on the same type: it must end before the latest of their shadow times.
            shadows = [
                self._shadow(k, home)
                for k in range(rank + 1)
                if self.p.reservations.backfill
                and self.reserved[k] not in self.started
                and self._home(self.jobs[self.reserved[k]]) == home
            ]
            shadow = max((t for t in shadows if t is not None), default=None)
            for start in self.plan.starts:
                if start.job_id in earlier:
                    continue
                est = runtime_estimate_s(self.jobs[start.job_id]) if shadow else None
                if (
                    shadow is not None
                    and est is not None
                    and start.job_id not in self.reserved
                    and self.s.taken_at + timedelta(seconds=est) <= shadow
                ):
                    continue  # backfilled: ends (by its estimate) before the reservation's start
                given = [
                    n
                    for n in start.nodes
                    if self.nodes.get(n)
                    and _fits(job, self.nodes[n], self.p)
                    and self.nodes[n].machine_type == home
                ]
                if given:
                    self.out.append(
                        f"job {jid} holds {len(mine)} of {job.nodes_needed} {home} "
                        f"but {len(given)} "
                        f"fitting node(s) went to job {start.job_id}"
                    )
            idle = [
                n.name
                for n in self.s.nodes
                if n.machine_type == home
                and n.free
                and n.name not in self.busy
                and n.name not in start_nodes
                and n.name not in {h.node for h in self.plan.held}
                and _fits(job, n, self.p)
            ]
            if idle:
                self.out.append(
                    f"job {jid} holds {len(mine)} of {job.nodes_needed} {home} "
                    f"while {len(idle)} fitting node(s) stay idle"
                )

    def _home(self, job: Job) -> str:
        return home_type(job, self.s, self.p)

    def _shadow(self, rank: int, home: str) -> datetime | None:
        """When the reservation at `rank` can start on `home` by estimates (docs/policy.md)."""
        demand = 0
        for jid in self.reserved[: rank + 1]:
            job = self.jobs[jid]
            start = self.started.get(jid)
            if start is not None and start.nodes and start.nodes[0] in self.nodes:
                where = self.nodes[start.nodes[0]].machine_type
            else:
                where = self._home(job)
            if where == home:
                demand += job.nodes_needed
        return shadow_time(self.s, self.p, self.jobs[self.reserved[rank]], home, demand)

    def fairness(self, dimension: str, share: float) -> None:
        if share >= 1.0:
            return

        def who(j: Job) -> str:
            return j.owner if dimension == "owner" else j.run

        base = Counter(n.machine_type for n in self.s.nodes if n.free or n.name in self.busy)
        waiting_types: dict[str, set[str]] = defaultdict(set)
        largest: dict[tuple[str, str], int] = defaultdict(int)
        for owner, run, machine_types, nodes in self.profiles:
            name = owner if dimension == "owner" else run
            for t in machine_types:
                waiting_types[t].add(name)
                largest[(name, t)] = max(largest[(name, t)], nodes)
        used: Counter[tuple[str, str]] = Counter()
        for rj in self.s.running:
            for name in rj.nodes:
                if name in self.nodes:
                    used[(who(rj.job), self.nodes[name].machine_type)] += 1
        new: Counter[tuple[str, str]] = Counter()
        for start in self.plan.starts:
            job = self.jobs.get(start.job_id)
            if job is None or not start.nodes or start.nodes[0] not in self.nodes:
                continue
            key = (who(job), self.nodes[start.nodes[0]].machine_type)
            used[key] += len(start.nodes)
            if start.job_id not in self.reserved:
                new[key] += len(start.nodes)
        best = self._best_priority(who) if self.p.fairness.peers_only else {}
        for key in sorted(new):
            name, machine_type = key
            rivals = waiting_types[machine_type] - {name}
            if best:
                # peers_only: only rivals at least as urgent as this name's best job count
                mine = best.get(key, math.inf)
                rivals = {r for r in rivals if best[(r, machine_type)] <= mine}
            if not rivals:
                continue  # nobody else (that counts) waits for this type: no cap
            cap = max(math.ceil(share * base[machine_type] - 1e-9), largest[key])
            if used[key] > cap:
                self.out.append(
                    f"{dimension} {name}: holds {used[key]} {machine_type} nodes after this plan, "
                    f"cap is {cap} ({share:.0%} of {base[machine_type]}) while others wait"
                )

    def _effective_of_eligible(self) -> dict[str, float]:
        """Effective priority of every eligible job that needs nodes (computed once per check)."""
        if self._effective is None:
            effective = effective_priority_fn(self.s.taken_at, self.p, self.s.usage)
            self._effective = {
                jid: effective(j)
                for jid, j in self.jobs.items()
                if j.nodes_needed > 0 and self.eligible[jid]
            }
        return self._effective

    def _best_priority(self, who: Callable[[Job], str]) -> dict[tuple[str, str], float]:
        """Best effective priority of the eligible jobs of each (owner or run, type)."""
        best: dict[tuple[str, str], float] = {}
        jobs = self.jobs
        for jid, eff in self._effective_of_eligible().items():
            j = jobs[jid]
            for t in j.machine_types:
                if eff < best.get((who(j), t), math.inf):
                    best[(who(j), t)] = eff
        return best

    def objective(self) -> None:
        expected = plan_objective(self.s, self.p, self.plan)
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
