"""EASY-style reservations: starved jobs start first or get free nodes held back for them.

Reserved jobs (docs/policy.md, "No starvation"): every eligible job that has
waited at least `reservations.after_hours`, oldest first (with
`priority_scaled`: at least its priority-scaled threshold, longest
*starved* first, i.e. by `queued_at + threshold`), then (with
`head_of_queue`) the first job in dispatch order, at most
`reservations.max_jobs` in all. In that order each one starts now if enough
compatible free nodes are left on one of its types (its home type first);
otherwise the compatible free nodes of its *home type* (the listed type with
the most compatible nodes in the lab, ties in listed order: stable from tick
to tick) are held for it, up to what it needs. Held nodes go to nobody else.
This runs before the optimization, which only sees the nodes left over.

With `reservations.relative_after_hours`, a job needing several nodes is also
starved once it has waited that long and more than `relative_factor` times as
long as any 1-node job of its priority waits or waited before it started (the
small jobs of its priority are served while it is not); it keeps its rank in the
order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from optialloc.ranking import reservation_order_s, reservation_threshold_s
from optialloc.solver.caps import CapTable
from optialloc.solver.lab import OK, Group, LabView, PoolKey, pool_fits

FreeNodes = dict[str, dict[PoolKey, list[str]]]


@dataclass
class Reservations:
    """What the reservation pass decided."""

    order: list[int] = field(default_factory=list)  # reserved job indexes, in priority order
    home: dict[int, str] = field(default_factory=dict)  # job index -> home machine type
    starts: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    holds: dict[int, list[str]] = field(default_factory=dict)  # job index -> held nodes


Starved = Callable[[Group, float], bool]


def starvation_test(
    lab: LabView, eligible: list[Group], threshold_of: Callable[[int], float]
) -> Starved:
    """`starved(group, waited)`: whether a member of `group` that waited so many seconds is.

    Starved: waited >= the threshold of its priority (`threshold_of`), or, with
    `relative_after_hours`, needing several nodes, waited at least that long and more
    than `relative_factor` x the longest wait of a 1-node job of its priority: an
    eligible queued one (its wait so far) or a running one (the wait it had when it
    started); 0 if there is none. Monotone in `waited`, so a group has a
    starved member iff its oldest member is starved.
    """
    rules = lab.policy.reservations
    if rules.relative_after_hours is None:
        return lambda g, waited: waited >= threshold_of(g.job.priority)
    floor, factor = rules.relative_after_hours * 3600.0, rules.relative_factor
    # per priority: the longest wait of a 1-node job, queued or (when it started) running
    single: dict[int, float] = {g.job.priority: 0.0 for g in eligible}
    for g in eligible:
        if g.job.nodes_needed == 1:
            single[g.job.priority] = max(single[g.job.priority], g.oldest)
    for rj in lab.snapshot.running:
        priority = rj.job.priority
        if rj.job.nodes_needed == 1 and priority in single:
            wait = (rj.started_at - rj.job.queued_at).total_seconds()
            single[priority] = max(single[priority], wait)

    def starved(g: Group, waited: float) -> bool:
        job = g.job
        if waited >= threshold_of(job.priority):
            return True
        return job.nodes_needed > 1 and waited >= floor and waited > factor * single[job.priority]

    return starved


def reserved_jobs(lab: LabView) -> list[int]:
    """Indexes of the jobs that get a reservation this tick, in reservation order."""
    settings = lab.policy.reservations
    if not settings.enabled or settings.max_jobs == 0:
        return []
    limit = settings.max_jobs
    jobs, waited = lab.jobs, lab.waited
    eligible = [g for g in lab.groups if g.state == OK and g.job.nodes_needed > 0]
    if settings.priority_scaled:
        chosen = _by_starved_since(lab, eligible, limit)
    else:
        flat = reservation_threshold_s(0, lab.policy)
        is_starved = starvation_test(lab, eligible, lambda _priority: flat)
        # The `limit` oldest jobs lie in the `limit` groups with the oldest members (and
        # in any group tied with the last of those: ties are broken by job id).
        starving = [g for g in eligible if is_starved(g, g.oldest)]
        old = heapq.nsmallest(limit, starving, key=lambda g: -g.oldest)
        if old:
            cut = old[-1].oldest
            old = [g for g in starving if g.oldest >= cut]
        starved = [i for g in old for i in g.members if is_starved(g, waited[i])]
        chosen = heapq.nsmallest(limit, starved, key=lambda i: (jobs[i].queued_at, jobs[i].job_id))
    if settings.head_of_queue and len(chosen) < limit and eligible:
        best = min(eligible, key=lambda g: (g.rank, g.job.nodes_needed, -g.oldest))
        top = (best.rank, best.job.nodes_needed)
        ties = [g for g in eligible if (g.rank, g.job.nodes_needed) == top]
        head = min((i for g in ties for i in g.members), key=lab.order_key)
        if head not in chosen:
            chosen.append(head)
    return chosen


def _by_starved_since(lab: LabView, eligible: list[Group], limit: int) -> list[int]:
    """Starved jobs (waited their priority-scaled threshold) in reservation order.

    The order is by `queued_at + reservation_order_s(priority)`, then job id: with
    the default `order_hours` that is the time the job became starved ("longest
    starved first"): a PR job queued at 10:00 starves at 12:24, a nightly queued
    the evening before at 20:00 today. A fixed time per job keeps the order stable
    from tick to tick (a newly starved job queues behind), which is what the
    anti-starvation bound needs (docs/policy.md).
    """
    jobs, waited, policy = lab.jobs, lab.waited, lab.policy
    # A group's first place in the order is its oldest member's, `order - oldest`
    # seconds from now. The limit-th earliest of those bounds the answer (each of
    # those groups' oldest job is starved and ranks by then), so few members are read.
    ranked: list[tuple[float, float, Group]] = []
    limits: dict[int, tuple[float, float]] = {}  # per priority: threshold, rank offset
    for g in eligible:
        priority = g.job.priority
        if priority not in limits:
            limits[priority] = (
                reservation_threshold_s(priority, policy),
                reservation_order_s(priority, policy),
            )
    is_starved = starvation_test(lab, eligible, lambda priority: limits[priority][0])
    for g in eligible:
        order = limits[g.job.priority][1]
        if is_starved(g, g.oldest):
            ranked.append((order - g.oldest, order, g))
    if not ranked:
        return []
    # With fewer groups than `limit` there is no such bound: read them all.
    firsts = heapq.nsmallest(limit, (r[0] for r in ranked))
    bound = firsts[-1] + 1e-3 if len(firsts) == limit else math.inf  # 1e-3: float slack
    starved: list[tuple[datetime, str, int]] = []
    for first, order, g in ranked:
        if first > bound:
            continue
        rank = timedelta(seconds=order)  # same arithmetic as the validator: exact ties
        starved.extend(
            (jobs[i].queued_at + rank, jobs[i].job_id, i)
            for i in g.members
            if is_starved(g, waited[i]) and order - waited[i] <= bound
        )
    return [i for _, _, i in heapq.nsmallest(limit, starved)]


def home_type(lab: LabView, index: int) -> str:
    """The reserved job's home type: most compatible nodes in the lab, ties in listed order."""
    job = lab.jobs[index]
    key = lab.group_of[index].ckey
    best, best_count = job.machine_types[0], -1
    for machine_type in job.machine_types:
        count = lab.total_compatible(key, machine_type)
        if count > best_count:
            best, best_count = machine_type, count
    return best


def _compatible_free(lab: LabView, free: FreeNodes, index: int, machine_type: str) -> list[str]:
    key = lab.group_of[index].ckey
    reimaged = lab.reimaged(machine_type)
    names: list[str] = []
    for pool, members in free.get(machine_type, {}).items():
        if pool_fits(key, pool, reimaged):
            names.extend(members)
    names.sort()
    return names


def _take(free: FreeNodes, lab: LabView, names: list[str]) -> None:
    for name in names:
        node = lab.node_by_name[name]
        pools = free[node.machine_type]
        for members in pools.values():
            if name in members:
                members.remove(name)
                break


def apply_reservations(
    lab: LabView, free: FreeNodes, owner_caps: CapTable, run_caps: CapTable
) -> Reservations:
    """Start or hold for each reserved job, taking nodes out of `free` (mutated)."""
    result = Reservations(order=reserved_jobs(lab))
    for index in result.order:
        job = lab.jobs[index]
        home = home_type(lab, index)
        result.home[index] = home
        types = [home] + [t for t in job.machine_types if t != home]
        started = False
        for machine_type in types:
            names = _compatible_free(lab, free, index, machine_type)
            if len(names) >= job.nodes_needed:
                chosen = names[: job.nodes_needed]
                _take(free, lab, chosen)
                result.starts.append((index, tuple(chosen)))
                owner_caps.add(job.owner, machine_type, job.nodes_needed)
                run_caps.add(job.run, machine_type, job.nodes_needed)
                started = True
                break
        if not started:
            held = _compatible_free(lab, free, index, home)[: job.nodes_needed]
            _take(free, lab, held)
            result.holds[index] = held
    return result
