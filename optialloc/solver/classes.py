"""Group candidate jobs into classes so the model's size follows free capacity, not queue depth.

Two jobs are in one class when nothing the model looks at tells them apart:
owner, run, nodes needed, which pools of which types can serve them, and
weight. Jobs with the same *signature* (all of that but the weight) compete
only among themselves in a fixed order (best weight first), and at most
`free compatible nodes // nodes needed` of them can start this tick, so only
that many are kept, and classes no optimum needs are dropped
(`optialloc.solver.dominance`). The model then has one integer variable per
(class, type).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

from optialloc.solver.caps import CapTable
from optialloc.solver.dominance import Proto, Usable, drop_dominated
from optialloc.solver.lab import OK, CompatKey, Group, LabView, pool_fits
from optialloc.solver.reserve import FreeNodes

#: Drop classes that no optimum needs (`optialloc.solver.dominance`); tests switch it
#: off to check that the optimum does not change.
DROP_DOMINATED = True


@dataclass
class JobClass:
    """Interchangeable candidate jobs; `members` in dispatch order (best first)."""

    owner: str | None  # None: no owner cap can bind for these jobs
    run: str | None  # None: no run cap can bind for these jobs
    nodes: int
    usable: Usable
    units: int
    members: list[int]


@dataclass
class Candidates:
    """The classes handed to the model, and how many eligible jobs there were before pruning."""

    classes: list[JobClass]
    eligible: int  # candidate jobs before keeping the best few per signature
    kept: int


def usable_types(lab: LabView, free: FreeNodes, key: CompatKey, nodes: int) -> Usable:
    """Types (and their compatible pools) with at least `nodes` compatible free nodes."""
    out = []
    for machine_type in key[0]:
        pools = free.get(machine_type, {})
        reimaged = lab.reimaged(machine_type)
        fit = frozenset(p for p, m in pools.items() if m and pool_fits(key, p, reimaged))
        if sum(len(pools[p]) for p in fit) >= nodes:
            out.append((machine_type, fit))
    return tuple(out)


def build_classes(
    lab: LabView,
    free: FreeNodes,
    skip: set[int],
    owner_caps: CapTable,
    run_caps: CapTable,
) -> Candidates:
    """Classes of eligible jobs that need nodes and are not in `skip` (reserved ones)."""
    usable_cache: dict[tuple[CompatKey, int], Usable] = {}
    sigs: dict[tuple[str | None, str | None, int, Usable], list[tuple[int, list[int]]]]
    sigs = defaultdict(list)
    eligible = 0
    skip_groups = {id(lab.group_of[i]) for i in skip}
    found: list[tuple[Group, Usable, list[int]]] = []
    demand: dict[tuple[str, str, str], int] = defaultdict(int)
    for group in lab.groups:
        job = group.job
        if group.state != OK or job.nodes_needed == 0:
            continue
        ukey = (group.ckey, job.nodes_needed)
        usable = usable_cache.get(ukey)
        if usable is None:
            usable = usable_cache[ukey] = usable_types(lab, free, group.ckey, job.nodes_needed)
        if not usable:
            continue
        members = group.members
        if id(group) in skip_groups:
            members = [i for i in members if i not in skip]
            if not members:
                continue
        eligible += len(members)
        found.append((group, usable, members))
        for machine_type, _pools in usable:
            demand[("o", job.owner, machine_type)] += job.nodes_needed * len(members)
            demand[("r", job.run, machine_type)] += job.nodes_needed * len(members)
    # A cap that even every candidate together cannot reach is redundant: classes then
    # ignore that owner (run), which merges them across owners (runs) and keeps them few.
    binding = set()
    for (dim, who, machine_type), nodes in demand.items():
        left = (owner_caps if dim == "o" else run_caps).remaining(who, machine_type)
        if left is not None and nodes > left:
            binding.add((dim, who))
    for group, usable, members in found:
        job = group.job
        owner = job.owner if ("o", job.owner) in binding else None
        run = job.run if ("r", job.run) in binding else None
        sigs[(owner, run, job.nodes_needed, usable)].append((group.units, members))
    # Proto-classes: (owner, run, nodes, usable, units, all members, how many to keep).
    protos: list[Proto] = []
    for (owner, run, nodes, usable), items in sigs.items():
        limit = 0
        for machine_type, pools in usable:
            room = sum(len(free[machine_type][p]) for p in pools)
            for caps, holder in ((owner_caps, owner), (run_caps, run)):
                left = caps.remaining(holder, machine_type)
                if left is not None:
                    room = min(room, left)
            limit += room // nodes
        by_units: dict[int, list[int]] = defaultdict(list)
        for units, members in items:
            by_units[units].extend(members)
        for units in sorted(by_units, reverse=True):
            if limit <= 0:
                break
            members = by_units[units]
            take = min(limit, len(members))
            protos.append((owner, run, nodes, usable, units, members, take))
            limit -= take
    if DROP_DOMINATED:
        protos = drop_dominated(protos, free, owner_caps, run_caps)
    classes: list[JobClass] = []
    kept = 0
    oldest_first = lab.order_keys.__getitem__  # equal units: (nearly) equal priority
    for owner, run, nodes, usable, units, members, take in protos:
        if take < len(members):
            chosen = heapq.nsmallest(take, members, key=oldest_first)
        else:
            chosen = sorted(members, key=oldest_first)
        classes.append(JobClass(owner, run, nodes, usable, units, chosen))
        kept += take
    # Deterministic model: classes in a fixed order independent of dict iteration quirks.
    classes.sort(key=lambda c: (-c.units, c.nodes, lab.order_key(c.members[0])))
    return Candidates(classes, eligible, kept)
