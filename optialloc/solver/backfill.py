"""EASY backfill around holds: short jobs may use held nodes if they end before the hold's start.

Only with `reservations.backfill` and only for jobs whose body carries a
runtime estimate (`runtime_estimate_s`; real teuthology bodies have none, so
there nothing backfills). Rule (docs/policy.md, "Backfill"):

- the *shadow time* of a reservation r holding nodes of its home type H is the
  earliest time at which the nodes of H that fit r and are free now, plus
  those freed by running jobs on H (each ending at `started_at + its
  estimate`, or `started_at + max_job_time_s` without one or once overrun),
  reach the nodes needed by r and by every reservation before it on H (held
  or started there);
- a queued, eligible, unreserved job with an estimate may start on r's held
  nodes when `taken_at + estimate <= shadow(r)`, within the caps.

The pass is greedy (heaviest weight, then dispatch order) after the
optimization; its starts count as fixed in the objective and the bound.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from optialloc.ranking import runtime_estimate_s
from optialloc.solver.caps import CapTable
from optialloc.solver.lab import OK, LabView, pool_fits, pool_key
from optialloc.solver.reserve import Reservations


def _release_times(lab: LabView, index: int, home: str) -> list[tuple[datetime, int]]:
    """(end time, nodes of `home` fitting job `index`) of each running job, by end time."""
    key = lab.group_of[index].ckey
    reimaged = lab.reimaged(home)
    max_time = timedelta(seconds=lab.policy.max_job_time_s)
    out: list[tuple[datetime, int]] = []
    for rj in lab.snapshot.running:
        count = 0
        for name in rj.nodes:
            node = lab.node_by_name.get(name)
            if (
                node is not None
                and node.machine_type == home
                and pool_fits(key, pool_key(node, reimaged), reimaged)
            ):
                count += 1
        if not count:
            continue
        est = runtime_estimate_s(rj.job, lab.snapshot.runtime_estimates)
        end = rj.started_at + (timedelta(seconds=est) if est is not None else max_time)
        if end < lab.snapshot.taken_at:
            end = rj.started_at + max_time  # overran its estimate: only the limit is sure
        out.append((end, count))
    out.sort(key=lambda item: item[0])
    return out


def shadow_times(
    lab: LabView, before: dict[str, dict[tuple[str | None, ...], list[str]]], res: Reservations
) -> dict[int, datetime]:
    """Shadow time of every holding reservation (absent: never, within known releases)."""
    demand: dict[str, int] = defaultdict(int)
    started_on = {i: lab.node_by_name[n[0]].machine_type for i, n in res.starts if n}
    out: dict[int, datetime] = {}
    for index in res.order:
        needed = lab.jobs[index].nodes_needed
        if index in started_on:
            demand[started_on[index]] += needed
            continue
        home = res.home[index]
        demand[home] += needed
        if index not in res.holds:
            continue
        key = lab.group_of[index].ckey
        reimaged = lab.reimaged(home)
        have = sum(len(m) for p, m in before.get(home, {}).items() if pool_fits(key, p, reimaged))
        when = lab.snapshot.taken_at
        for end, count in _release_times(lab, index, home):
            if have >= demand[home]:
                break
            have += count
            when = end
        if have >= demand[home]:
            out[index] = when
    return out


def backfill(
    lab: LabView,
    before: dict[str, dict[tuple[str | None, ...], list[str]]],
    res: Reservations,
    started: set[int],
    owner_caps: CapTable,
    run_caps: CapTable,
) -> list[tuple[int, tuple[str, ...]]]:
    """Start short jobs on held nodes (removing them from `res.holds`); the new starts."""
    if not lab.policy.reservations.backfill or not any(res.holds.values()):
        return []
    shadows = shadow_times(lab, before, res)
    reserved = set(res.order)
    groups = sorted(
        (g for g in lab.groups if g.state == OK and g.job.nodes_needed > 0),
        key=lambda g: (-g.units, lab.order_key(g.members[0])),
    )
    taken_at = lab.snapshot.taken_at
    out: list[tuple[int, tuple[str, ...]]] = []
    for r in res.order:
        held = res.holds.get(r)
        if not held or r not in shadows:
            continue
        room = (shadows[r] - taken_at).total_seconds()
        home = res.home[r]
        reimaged = lab.reimaged(home)
        for group in groups:
            job = group.job
            if home not in job.machine_types or job.nodes_needed > len(held):
                continue
            if not all(
                pool_fits(group.ckey, pool_key(lab.node_by_name[n], reimaged), reimaged)
                for n in held
            ):
                continue
            for i in group.members:
                if len(held) < job.nodes_needed:
                    break
                if i in started or i in reserved:
                    continue
                est = runtime_estimate_s(lab.jobs[i], lab.snapshot.runtime_estimates)
                if est is None or est > room:
                    continue
                left = [
                    c.remaining(w, home) for c, w in ((owner_caps, job.owner), (run_caps, job.run))
                ]
                if any(x is not None and x < job.nodes_needed for x in left):
                    break  # the rest of the group shares owner and run
                given = tuple(held[: job.nodes_needed])
                del held[: job.nodes_needed]
                owner_caps.add(job.owner, home, job.nodes_needed)
                run_caps.add(job.run, home, job.nodes_needed)
                started.add(i)
                out.append((i, given))
    return out
