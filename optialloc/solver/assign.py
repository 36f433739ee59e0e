"""Pick concrete nodes for the counted solution, deterministically.

Within a type, jobs are served in dispatch order and take the lowest-named
free nodes of their compatible pools. When a type has several pools, a small
max-flow (jobs -> pools -> sink) splits each job's nodes over its pools; the
model's Hall constraints guarantee the flow saturates.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import networkx as nx

from optialloc.solver.classes import Candidates
from optialloc.solver.lab import LabView, PoolKey
from optialloc.solver.reserve import FreeNodes

log = logging.getLogger(__name__)


def assign_nodes(
    lab: LabView, free: FreeNodes, cands: Candidates, counts: dict[tuple[int, str], int]
) -> list[tuple[int, tuple[str, ...]]]:
    """(job index, nodes) for every job the counts start; nodes are removed from `free`."""
    per_type: dict[str, list[tuple[int, frozenset[PoolKey]]]] = defaultdict(list)
    for ci, cls in enumerate(cands.classes):
        members = iter(cls.members)
        for machine_type, pools in cls.usable:
            for _ in range(counts.get((ci, machine_type), 0)):
                per_type[machine_type].append((next(members), pools))
    starts: list[tuple[int, tuple[str, ...]]] = []
    for machine_type in sorted(per_type):
        jobs = sorted(per_type[machine_type], key=lambda item: lab.order_key(item[0]))
        type_pools = free[machine_type]
        filled = [p for p, m in type_pools.items() if m]
        if len(filled) <= 1:
            names = type_pools[filled[0]] if filled else []
            cursor = 0
            for index, _ in jobs:
                need = lab.jobs[index].nodes_needed
                starts.append((index, tuple(names[cursor : cursor + need])))
                cursor += need
            del names[:cursor]
        else:
            starts.extend(_flow_assign(lab, type_pools, jobs))
    return starts


def _flow_assign(
    lab: LabView, pools: dict[PoolKey, list[str]], jobs: list[tuple[int, frozenset[PoolKey]]]
) -> list[tuple[int, tuple[str, ...]]]:
    graph = nx.DiGraph()
    pool_ids = {p: f"p{k}" for k, p in enumerate(sorted(pools, key=repr))}
    for pool, pid in pool_ids.items():
        graph.add_edge(pid, "sink", capacity=len(pools[pool]))
    for index, usable in jobs:
        jid = f"j{index}"
        graph.add_edge("source", jid, capacity=lab.jobs[index].nodes_needed)
        for pool in sorted(usable, key=repr):
            graph.add_edge(jid, pool_ids[pool], capacity=lab.jobs[index].nodes_needed)
    _value, flow = nx.maximum_flow(graph, "source", "sink")
    starts = []
    for index, usable in jobs:
        need = lab.jobs[index].nodes_needed
        jid = f"j{index}"
        if sum(flow[jid].values()) < need:
            log.warning(
                "job %s dropped: its pools cannot give %d nodes", lab.jobs[index].job_id, need
            )
            continue
        chosen: list[str] = []
        for pool in sorted(usable, key=repr):
            amount = flow[jid].get(pool_ids[pool], 0)
            chosen.extend(pools[pool][:amount])
            del pools[pool][:amount]
        starts.append((index, tuple(sorted(chosen))))
    return starts
