"""Fairness caps: how many nodes of a type one owner (or one run) may hold while others wait.

Rule (docs/policy.md): for machine type T and owner O, when some eligible
queued job of another owner lists T, O may hold at most
`max(ceil(owner_max_share x base(T)), largest eligible job of O on T)` nodes of
T, counting its running jobs and this tick's starts; `base(T)` is the number
of nodes of T that are free or used by running jobs. Same for runs with
`run_max_share`. With `fairness.peers_only` a cap binds only while another
owner (run) waits for T with an eligible job whose effective priority is equal
to or better than the best of O's eligible jobs on T. Reserved jobs are exempt
(their nodes still count), so a cap can be exceeded only by a starved job's
reservation. With `fairness.work_conserving` a rival counts only while it holds
(running jobs) fewer nodes of T than its own cap `max(ceil(share x base(T)),
its largest eligible job on T)`: rivals at their caps cannot use freed nodes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from optialloc.domain import Job
from optialloc.solver.lab import OK, LabView, share_cap


@dataclass
class CapTable:
    """Active caps of one dimension (owner or run): (who, type) -> (cap, nodes used)."""

    dimension: str  # "owner" or "run"
    cap: dict[tuple[str, str], int]
    used: dict[tuple[str, str], int]

    def remaining(self, who: str | None, machine_type: str) -> int | None:
        """Nodes `who` may still take on the type, None when no cap applies (or who is None)."""
        if who is None:
            return None
        key = (who, machine_type)
        if key not in self.cap:
            return None
        return max(0, self.cap[key] - self.used.get(key, 0))

    def add(self, who: str, machine_type: str, nodes: int) -> None:
        self.used[(who, machine_type)] = self.used.get((who, machine_type), 0) + nodes


def build_caps(lab: LabView, dimension: str) -> CapTable:
    """Caps for `dimension` ('owner' or 'run'), with running jobs' nodes already counted."""
    fairness = lab.policy.fairness
    share = fairness.owner_max_share if dimension == "owner" else fairness.run_max_share
    who: Callable[[Job], str] = (lambda j: j.owner) if dimension == "owner" else (lambda j: j.run)
    table = CapTable(dimension, {}, {})
    if share >= 1.0:
        return table
    waiting_by_type: dict[str, set[str]] = defaultdict(set)
    largest: dict[tuple[str, str], int] = defaultdict(int)
    best: dict[tuple[str, str], float] = {}
    for group in lab.groups:
        job = group.job
        if group.state != OK or job.nodes_needed == 0:
            continue
        name = who(job)
        for machine_type in job.machine_types:
            waiting_by_type[machine_type].add(name)
            key = (name, machine_type)
            if job.nodes_needed > largest[key]:
                largest[key] = job.nodes_needed
            if group.eff < best.get(key, math.inf):
                best[key] = group.eff
    for rj in lab.snapshot.running:
        for node in rj.nodes:
            found = lab.node_by_name.get(node)
            if found is not None:
                table.add(who(rj.job), found.machine_type, 1)
    if fairness.work_conserving:
        # Rivals at their own cap take no freed node: they do not count as waiting.
        for (name, machine_type), big in largest.items():
            base = lab.share_base.get(machine_type, 0)
            if table.used.get((name, machine_type), 0) >= share_cap(share, base, big):
                waiting_by_type[machine_type].discard(name)
    # Per type, the two most urgent names (best effective priority): another name
    # at least as urgent as `name` exists iff the most urgent other one is.
    top: dict[str, list[tuple[float, str]]] = defaultdict(list)
    if fairness.peers_only:
        for (name, machine_type), eff in best.items():
            if name not in waiting_by_type[machine_type]:
                continue  # at its cap (work_conserving): not a rival
            pair = top[machine_type]
            pair.append((eff, name))
            pair.sort()
            del pair[2:]
    for (name, machine_type), big in largest.items():
        if fairness.peers_only:
            mine = best[(name, machine_type)]
            rival = next((e for e, o in top[machine_type] if o != name), math.inf)
            others = rival <= mine
        else:
            others = bool(waiting_by_type[machine_type] - {name})
        if others:
            base = lab.share_base.get(machine_type, 0)
            table.cap[(name, machine_type)] = share_cap(share, base, big)
    return table
