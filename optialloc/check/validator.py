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
import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter

from optialloc.check.backfill import fits as _fits
from optialloc.check.backfill import home_type, shadow_time
from optialloc.domain import Job, Node, Plan, Snapshot, WaitReason
from optialloc.policy import Policy
from optialloc.profiles import jobs_by_id, profile_groups
from optialloc.ranking import (
    dispatch_key,
    dispatch_priority,
    effective_priority_at_fn,
    effective_priority_fn,
    job_weight_fn,
    reservation_order_s,
    reservation_threshold_s,
    runtime_estimate_s,
)

_QUEUED_AT = attrgetter("queued_at")
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


def _can_ever_run(job: Job, snapshot: Snapshot, policy: Policy) -> bool:
    if job.nodes_needed == 0:
        return True
    return any(
        sum(1 for n in snapshot.nodes if n.machine_type == t and _fits(job, n, policy))
        >= job.nodes_needed
        for t in job.machine_types
    )


class _Profile:
    """Queued jobs sharing a profile (`optialloc.profiles`): a representative,
    the members, the oldest."""

    __slots__ = ("eligible", "job", "members", "oldest", "valid")

    def __init__(self, members: list[Job]) -> None:
        self.job = members[0]
        self.members = members
        self.oldest = min(map(_QUEUED_AT, members))
        self.valid = True
        self.eligible = True


class _Check:
    def __init__(self, snapshot: Snapshot, policy: Policy, plan: Plan) -> None:
        self.s, self.p, self.plan = snapshot, policy, plan
        self.out: list[str] = []
        self.jobs = jobs_by_id(snapshot.queue)
        self.nodes = {n.name: n for n in snapshot.nodes}
        self.busy = {name for rj in snapshot.running for name in rj.nodes}
        # Validity, eligibility, fairness and reservations read nothing of a job
        # but its profile (and age): the queue is checked once per profile.
        queue = snapshot.queue
        grouped = profile_groups(queue)
        profiles = {
            key: _Profile(list(map(queue.__getitem__, members)))
            for key, members in zip(grouped.keys, grouped.members, strict=True)
        }
        pending: Counter[str] = Counter()
        for profile in profiles.values():
            if not profile.job.last_in_suite:
                pending[profile.job.run] += len(profile.members)
        pending.update(rj.job.run for rj in snapshot.running if not rj.job.last_in_suite)
        cache: dict[tuple[object, ...], bool] = {}
        for profile in profiles.values():
            j = profile.job
            ckey = (j.machine_types, j.os_type, j.os_version, j.arch, j.nodes_needed)
            if ckey not in cache:
                cache[ckey] = _can_ever_run(j, snapshot, policy)
            profile.valid = cache[ckey]
            profile.eligible = (
                profile.valid
                and j.tube not in snapshot.paused_tubes
                and not (j.last_in_suite and pending[j.run] > 0)
            )
        self.pending_runs = pending
        self.invalid_ids = {
            j.job_id for profile in profiles.values() if not profile.valid for j in profile.members
        }
        # Eligible profiles that need nodes: what fairness and reservations look at.
        self.candidates = [p for p in profiles.values() if p.eligible and p.job.nodes_needed > 0]
        self.started = {s.job_id: s for s in plan.starts}
        #: nodes per type counted for fairness shares: free or used by a running job
        self.share_base = Counter(
            n.machine_type for n in snapshot.nodes if n.free or n.name in self.busy
        )
        self.reserved = self._reserved()

    def _reserved(self) -> list[str]:
        rules = self.p.reservations
        if not rules.enabled or rules.max_jobs == 0:
            return []
        taken_at = self.s.taken_at
        # Threshold per profile: a function of its priority alone; a profile whose
        # oldest job is under it has no starved job (its members are younger).
        # Per priority: the threshold (a job is starved past it) and its rank in
        # reservation order (queued_at + order). A profile whose oldest job is
        # under the threshold has no starved job (its members are younger).
        limits: dict[int, tuple[timedelta, timedelta]] = {}
        ranked: list[tuple[datetime, timedelta, _Profile]] = []
        for profile in self.candidates:
            priority = profile.job.priority
            if priority not in limits:
                limits[priority] = (
                    timedelta(seconds=reservation_threshold_s(priority, self.p)),
                    timedelta(seconds=reservation_order_s(priority, self.p)),
                )
        starved = self._starvation(limits)
        for profile in self.candidates:
            order = limits[profile.job.priority][1]
            if starved(profile.job, profile.oldest):
                ranked.append((profile.oldest + order, order, profile))
        if not ranked:
            old: list[tuple[datetime, str]] = []
        else:
            # By rank, then id. The max_jobs-th earliest profile rank bounds the
            # answer (each of those profiles' oldest job is starved and ranks by
            # then), so few members are read; with fewer profiles, read them all.
            firsts = heapq.nsmallest(rules.max_jobs, ranked, key=itemgetter(0))
            bound = (
                firsts[-1][0]
                if len(firsts) == rules.max_jobs
                else datetime.max.replace(tzinfo=taken_at.tzinfo)
            )
            old = heapq.nsmallest(
                rules.max_jobs,
                (
                    (j.queued_at + order, j.job_id)
                    for first, order, profile in ranked
                    if first <= bound
                    for j in profile.members
                    if starved(profile.job, j.queued_at) and j.queued_at + order <= bound
                ),
            )
        chosen = [jid for _, jid in old]
        if rules.head_of_queue and len(chosen) < rules.max_jobs and self.candidates:
            effective = effective_priority_fn(taken_at, self.p, self.s.usage)
            learned = self.s.runtime_estimates
            # Every member is read: within a profile, members with different runtime
            # estimates (descriptions) rank differently, so the oldest need not lead.
            head = min(
                (j for p in self.candidates for j in p.members),
                key=lambda j: dispatch_key(
                    j,
                    dispatch_priority(effective(j), runtime_estimate_s(j, learned), self.p),
                ),
            )
            if head.job_id not in chosen:
                chosen.append(head.job_id)
        return chosen

    def _starvation(
        self, limits: dict[int, tuple[timedelta, timedelta]]
    ) -> Callable[[Job, datetime], bool]:
        """`starved(profile job, queued_at)` (docs/policy.md, "No starvation"): waited the
        threshold of its priority, or (`relative_after_hours`) needs several nodes, waited
        that long and more than `relative_factor` x the longest wait of a 1-node job of its
        priority, queued (so far) or running (before it started; 0 if none)."""
        taken_at = self.s.taken_at
        rules = self.p.reservations
        after = rules.relative_after_hours
        floor = timedelta(seconds=(after or 0.0) * 3600.0)
        # per priority: the longest wait (seconds) of a 1-node job, queued or running
        single: dict[int, float] = {}
        for profile in self.candidates if after is not None else ():
            j = profile.job
            wait = (taken_at - profile.oldest).total_seconds() if j.nodes_needed == 1 else 0.0
            single[j.priority] = max(single.get(j.priority, 0.0), wait)
        for rj in self.s.running:
            if rj.job.nodes_needed == 1 and rj.job.priority in single:
                wait = (rj.started_at - rj.job.queued_at).total_seconds()  # before it started
                single[rj.job.priority] = max(single[rj.job.priority], wait)

        def starved(job: Job, queued_at: datetime) -> bool:
            if queued_at + limits[job.priority][0] <= taken_at:
                return True
            if after is None or job.nodes_needed < 2 or queued_at + floor > taken_at:
                return False
            waited = (taken_at - queued_at).total_seconds()
            return waited > rules.relative_factor * single[job.priority]

        return starved

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
                est = (
                    runtime_estimate_s(self.jobs[start.job_id], self.s.runtime_estimates)
                    if shadow
                    else None
                )
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

        base = self.share_base

        def share_of(machine_type: str) -> int:
            return math.ceil(share * base[machine_type] - 1e-9)

        used: Counter[tuple[str, str]] = Counter()
        for rj in self.s.running:
            for name in rj.nodes:
                if name in self.nodes:
                    used[(who(rj.job), self.nodes[name].machine_type)] += 1
        before = used.copy()  # running jobs only: what work_conserving compares with caps
        new: Counter[tuple[str, str]] = Counter()
        for start in self.plan.starts:
            job = self.jobs.get(start.job_id)
            if job is None or not start.nodes or start.nodes[0] not in self.nodes:
                continue
            key = (who(job), self.nodes[start.nodes[0]].machine_type)
            used[key] += len(start.nodes)
            if start.job_id not in self.reserved:
                new[key] += len(start.nodes)
        # A cap is never below its share of the type, so only names over that can
        # break one; most plans have none, and then the waiting rivals need no look.
        over = [k for k in sorted(new) if used[k] > share_of(k[1])]
        if not over:
            return
        waiting_types: dict[str, set[str]] = defaultdict(set)
        largest: dict[tuple[str, str], int] = defaultdict(int)
        for profile in self.candidates:
            name = who(profile.job)
            for t in profile.job.machine_types:
                waiting_types[t].add(name)
                largest[(name, t)] = max(largest[(name, t)], profile.job.nodes_needed)

        def cap_of(name: str, machine_type: str) -> int:
            """The cap docs/policy.md gives `name` on the type: its share, or its largest job."""
            return max(share_of(machine_type), largest[(name, machine_type)])

        best = self._best_priority(who) if self.p.fairness.peers_only else {}
        for key in over:
            name, machine_type = key
            rivals = waiting_types[machine_type] - {name}
            if best:
                # peers_only: only rivals at least as urgent as this name's best job count
                mine = best.get(key, math.inf)
                rivals = {r for r in rivals if best[(r, machine_type)] <= mine}
            if self.p.fairness.work_conserving:
                # a rival at its own cap (before this plan) cannot use the nodes
                rivals = {r for r in rivals if before[(r, machine_type)] < cap_of(r, machine_type)}
            if not rivals:
                continue  # nobody else (that counts) waits for this type: no cap
            cap = cap_of(name, machine_type)
            if used[key] > cap:
                self.out.append(
                    f"{dimension} {name}: holds {used[key]} {machine_type} nodes after this plan, "
                    f"cap is {cap} ({share:.0%} of {base[machine_type]}) while others wait"
                )

    def _best_priority(self, who: Callable[[Job], str]) -> dict[tuple[str, str], float]:
        """Best effective priority of the eligible jobs of each (owner or run, type).

        Aging only lowers a job's effective priority as it waits, and the usage
        penalty depends on the owner alone, so a profile's best is its oldest job's.
        """
        effective = effective_priority_at_fn(self.s.taken_at, self.p, self.s.usage)
        best: dict[tuple[str, str], float] = {}
        for profile in self.candidates:
            j = profile.job
            eff = effective(j.priority, j.owner, profile.oldest)
            for t in j.machine_types:
                if eff < best.get((who(j), t), math.inf):
                    best[(who(j), t)] = eff
        return best

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
