"""Plan check, reservations: starved jobs' held nodes go to nobody else.

Which jobs are starved (docs/policy.md, "No starvation": the threshold of
their priority, or the relative rule for multi-node jobs), which of them get
reservations (`reservations.max_jobs`, in reservation order, plus the head of
the queue with `head_of_queue`), and that the plan holds enough nodes for
each and gives held nodes to no other job, except a backfill that ends before
the reservation's shadow time (`optialloc.check.backfill`).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter

from optialloc.check.backfill import fits as _fits
from optialloc.check.backfill import home_type, shadow_time
from optialloc.check.state import CheckState, Profile
from optialloc.domain import Job
from optialloc.ranking import (
    dispatch_key,
    dispatch_priority,
    effective_priority_fn,
    reservation_order_s,
    reservation_threshold_s,
    runtime_estimate_s,
)

_QUEUED_AT = attrgetter("queued_at")
_JOB_ID = attrgetter("job_id")


class HoldRules(CheckState):
    """The reservation rules; `reserved` must be set from `_reserved()` before `holds()`."""

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
        ranked: list[tuple[datetime, timedelta, Profile]] = []
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
