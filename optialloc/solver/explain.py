"""Why each job waits, and where it stands in the queue.

Position: 1-based rank among waiting jobs in dispatch order (reserved jobs
first, in reservation order; then effective priority, fewer nodes, oldest,
job id). Reason: the first that applies, in this order: invalid, tube paused,
waiting for its run, reserved but short of nodes, not enough compatible free
nodes on any type, free nodes held for a reserved job, owner or run at its
fairness cap, capacity taken by this tick's starts (jobs ranked ahead, or
smaller jobs of any priority that fit: the text never claims "higher"). With
reservations on, a waiting job's detail ends with the documented bound
(docs/policy.md, "The anti-starvation bound"): "reserved from 14:20 at the
latest" (its rank, `queued_at + reservation_order_s`; a date is added when
that is not within a day), after which it starts within `max_job_time_s`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from itertools import count
from operator import attrgetter, itemgetter

from optialloc.domain import Waiting, WaitReason
from optialloc.ranking import reservation_order_s
from optialloc.solver.caps import CapTable
from optialloc.solver.lab import (
    INVALID,
    PAUSED,
    RUN,
    CompatKey,
    LabView,
    PoolKey,
    pool_fits,
)
from optialloc.solver.reserve import FreeNodes, Reservations

Counts = dict[str, dict[PoolKey, int]]


def pool_counts(free: FreeNodes) -> Counts:
    """Free node counts per type and pool (a snapshot of `free` at one stage of the solve)."""
    return {t: {p: len(m) for p, m in pools.items()} for t, pools in free.items()}


class Explainer:
    """Builds the `Waiting` entries once the plan's starts and holds are known."""

    def __init__(
        self,
        lab: LabView,
        before: FreeNodes,
        after_holds: Counts,
        after: FreeNodes,
        res: Reservations,
        owner_caps: CapTable,
        run_caps: CapTable,
    ) -> None:
        self.lab = lab
        self.stages = (pool_counts(before), after_holds, pool_counts(after))
        self.res = res
        self.owner_caps = owner_caps
        self.run_caps = run_caps
        # Per type: who holds free nodes (and how many), and which reserved jobs
        # started on it, so a wait is blamed on the right one of the two.
        self.held_by_type: dict[str, list[str]] = defaultdict(list)
        self.held_count: dict[str, int] = defaultdict(int)
        for index, nodes in res.holds.items():
            if nodes:
                self.held_by_type[res.home[index]].append(lab.jobs[index].job_id)
                self.held_count[res.home[index]] += len(nodes)
        self.reserved_started: dict[str, list[str]] = defaultdict(list)
        for index, given in res.starts:
            if given:
                machine_type = lab.node_by_name[given[0]].machine_type
                self.reserved_started[machine_type].append(lab.jobs[index].job_id)
        self.fit_cache: dict[CompatKey, list[tuple[str, int, int, int]]] = {}
        self.run_left = lab.busy_runs  # counted once, by the lab's scan

    def _fits(self, key: CompatKey) -> list[tuple[str, int, int, int]]:
        """Per listed type: compatible free nodes before holds, after holds, after starts."""
        if key not in self.fit_cache:
            rows = []
            for machine_type in key[0]:
                reimaged = self.lab.reimaged(machine_type)
                before, held, after = (
                    sum(
                        n
                        for p, n in stage.get(machine_type, {}).items()
                        if pool_fits(key, p, reimaged)
                    )
                    for stage in self.stages
                )
                rows.append((machine_type, before, held, after))
            self.fit_cache[key] = rows
        return self.fit_cache[key]

    def reason(self, index: int) -> tuple[WaitReason, str]:
        lab = self.lab
        job = lab.jobs[index]
        group = lab.group_of[index]
        state = group.state
        if state == INVALID:
            return WaitReason.INVALID, lab.invalid_detail[(group.ckey, job.nodes_needed)]
        if state == PAUSED:
            return WaitReason.TUBE_PAUSED, f"tube {job.tube} is paused"
        if state == RUN:
            left = self.run_left.get(job.run, 0)
            return (
                WaitReason.WAITING_FOR_RUN,
                f"last_in_suite: {left} other job(s) of run {job.run} not done",
            )
        need = job.nodes_needed
        rows = self._fits(group.ckey)
        if index in self.res.holds:
            home = self.res.home[index]
            held = len(self.res.holds[index])
            if not held:  # nothing free to hold now: it is first in line for what frees up
                return (
                    WaitReason.NOT_ENOUGH_NODES,
                    f"reserved: needs {need} {home}, none free to hold yet; "
                    f"the next {need} that free up are held for it",
                )
            return (
                WaitReason.NOT_ENOUGH_NODES,
                f"reserved: needs {need} {home}, {held} held for it, waits for {need - held} more",
            )
        best = max(rows, key=lambda r: r[1])
        if best[1] < need:
            return (
                WaitReason.NOT_ENOUGH_NODES,
                f"needs {need} {_types(rows)}, {best[1]} free {best[0]}",
            )
        best = max(rows, key=lambda r: r[2])
        if best[2] < need:
            top = max(rows, key=lambda r: r[1])
            machine_type, taken = top[0], top[1] - top[2]
            held = min(self.held_count.get(machine_type, 0), taken)
            starved = _first(self.reserved_started.get(machine_type, []))
            if held:
                holders = _first(self.held_by_type[machine_type])
                also = f", {taken - held} to starved job(s) {starved}" if taken > held else ""
                return (
                    WaitReason.HELD_FOR_JOB,
                    f"needs {need} {machine_type}, {top[1]} free, "
                    f"{held} held for job(s) {holders}{also}",
                )
            return (
                WaitReason.LOWER_PRIORITY,
                f"needs {need} {machine_type}, {top[1]} free, {taken} given to starved "
                f"job(s) {starved} (waited past their reservation threshold)",
            )
        open_rows = [r for r in rows if r[2] >= need]
        checks = (
            (self.owner_caps, job.owner, WaitReason.OWNER_OVER_SHARE),
            (self.run_caps, job.run, WaitReason.RUN_OVER_SHARE),
        )

        def blocker(machine_type: str) -> tuple[CapTable, str, WaitReason] | None:
            for caps, who, reason in checks:
                left = caps.remaining(who, machine_type)
                if left is not None and left < need:
                    return caps, who, reason
            return None

        blocked = [blocker(r[0]) for r in open_rows]
        first = blocked[0]
        if first is not None and all(b is not None for b in blocked):
            caps, who, reason = first
            t = open_rows[0][0]
            left = max(0, caps.remaining(who, t) or 0)
            return reason, (
                f"{caps.dimension} {who or '(none)'} holds {caps.used.get((who, t), 0)} {t} "
                f"nodes, cap {caps.cap[(who, t)]} while others wait: {left} left under the "
                f"cap, this job needs {need}"
            )
        best = max(open_rows, key=lambda r: r[3])
        if best[3] >= need:
            return WaitReason.LOWER_PRIORITY, (
                f"needs {need} {best[0]}, {best[3]} still free: solver stopped before placing it"
            )
        # The nodes went to this tick's starts: jobs ranked ahead of it, or (backfill)
        # smaller jobs of any priority that fit; so say "this tick's starts", not "higher".
        return WaitReason.LOWER_PRIORITY, (
            f"needs {need} {best[0]}, {best[2]} free, {best[2] - best[3]} taken by "
            f"this tick's starts, {best[3]} left"
        )

    def waiting(self, started: set[int]) -> list[Waiting]:
        """`Waiting` entries for every job not in `started`, numbered in dispatch order."""
        lab = self.lab
        holds = self.res.holds
        out = [
            Waiting(lab.jobs[i].job_id, position, *self.reason(i))
            for position, i in enumerate((i for i in self.res.order if i in holds), start=1)
        ]
        skip = started | set(self.res.order)
        # Groups in order first, so the final sort meets long sorted runs (timsort).
        groups = sorted(lab.groups, key=lambda g: (g.rank, g.job.nodes_needed, -g.oldest))
        rest = [i for g in groups for i in g.members if i not in skip]
        rest.sort(key=lab.order_keys.__getitem__)
        for group in lab.groups:
            group.why = None
        # The reason depends on less than the group does (not on priority or age),
        # and on no member-specific fact but holds (held jobs are not in `rest`):
        # one per group with a waiting member, shared between look-alike groups.
        shared: dict[tuple[object, ...], tuple[WaitReason, str]] = {}
        for group in groups:
            index = next((i for i in group.members if i not in skip), None)
            if index is None:
                continue
            job = group.job
            key = (group.state, group.ckey, job.nodes_needed, job.owner, job.run, job.tube)
            why = shared.get(key)
            if why is None:
                why = shared[key] = self.reason(index)
            group.why = why
        # Per waiting job, all in C (map) but the tuple itself.
        whys = list(map(attrgetter("why"), map(lab.group_of.__getitem__, rest)))
        details = self._with_bounds(rest, whys)
        out.extend(
            map(
                Waiting,
                map(itemgetter(3), map(lab.order_keys.__getitem__, rest)),
                count(len(out) + 1),
                map(itemgetter(0), whys),
                details,
            )
        )
        return out

    def _with_bounds(self, rest: list[int], whys: list[tuple[WaitReason, str]]) -> list[str]:
        """Each job's detail, plus "reserved from HH:MM at the latest" when it has a bound."""
        lab = self.lab
        policy = lab.policy
        if not policy.reservations.enabled or policy.reservations.max_jobs == 0:
            return [why[1] for why in whys]
        taken_at = lab.snapshot.taken_at
        offsets: dict[int, timedelta] = {}
        labels: dict[datetime, str] = {}
        out = []
        for index, (reason, detail) in zip(rest, whys, strict=True):
            if reason in _NO_BOUND:
                out.append(detail)
                continue
            job = lab.jobs[index]
            offset = offsets.get(job.priority)
            if offset is None:
                offset = offsets[job.priority] = timedelta(
                    seconds=reservation_order_s(job.priority, policy)
                )
            at = job.queued_at + offset
            label = labels.get(at)
            if label is None:
                near = abs(at - taken_at) < timedelta(days=1)
                label = labels[at] = at.strftime("%H:%M" if near else "%Y-%m-%d %H:%M")
            out.append(f"{detail}; reserved from {label} at the latest")
        return out


#: reasons no reservation changes: the job cannot run, or waits for something else
_NO_BOUND = frozenset({WaitReason.INVALID, WaitReason.TUBE_PAUSED, WaitReason.WAITING_FOR_RUN})


def _first(job_ids: list[str], limit: int = 3) -> str:
    """Up to `limit` job ids, and how many more."""
    shown = ", ".join(job_ids[:limit])
    return shown + (f" (+{len(job_ids) - limit} more)" if len(job_ids) > limit else "")


def _types(rows: list[tuple[str, int, int, int]]) -> str:
    return " or ".join(r[0] for r in rows)
