"""The counted CP-SAT model: how many jobs of each class start on each machine type.

Rules, one per constraint family (the validator checks the same rules its own way):
- capacity: on each type, the jobs started fit the free nodes left after
  reservations; where a type has several pools (OS/arch), for every set U of
  pools the jobs that can only use pools in U fit the free nodes of U (Hall's
  condition, so concrete nodes can always be picked afterwards);
- class size: a class starts at most as many jobs as it has members;
- fairness: per (owner, type) and (run, type) the nodes started stay within
  the cap's remaining room;
- objective: maximize the sum of started jobs' integer weights.
A greedy solution (best weight first) is the hint, the fallback when CP-SAT
finds nothing in time, and, when it starts every candidate, the proven optimum.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

from ortools.sat.python import cp_model

from optialloc.policy import SolverSettings
from optialloc.solver.caps import CapTable
from optialloc.solver.classes import Candidates, JobClass
from optialloc.solver.lab import PoolKey
from optialloc.solver.reserve import FreeNodes

#: Models with at most this many variables get CP-SAT's presolve; 0: none do. The
#: models here are wide rather than hard (classes, most dominated, and a greedy hint
#: that is usually optimal), and presolve cost more than it saved at every size measured
#: (`tests/bench_solver.py`, 2026-11-25: Sepia scale 48 -> 44 ms, with learned
#: estimates on every job 83 -> 67 ms, 15 nodes x 40 contended jobs 2.4 -> 1.8 ms;
#: at 10x it took half of CP-SAT's time). Every tick stayed OPTIMAL with gap 0.
PRESOLVE_MAX_VARS = 0

#: Above this many pools in one type, only the pool sets that jobs actually use are
#: constrained (2^k subsets would be too many); assignment then drops what cannot fit.
MAX_HALL_POOLS = 10


@dataclass
class ModelResult:
    """Counts per (class index, type), objective and bound in integer weight units."""

    counts: dict[tuple[int, str], int]
    objective: int
    bound: int
    status: str
    variables: int = 0
    constraints: int = 0


def _room(free: FreeNodes, machine_type: str, pools: frozenset[PoolKey]) -> int:
    return sum(len(free[machine_type][p]) for p in pools)


def greedy(
    cands: Candidates, free: FreeNodes, owner_caps: CapTable, run_caps: CapTable
) -> ModelResult:
    """Best weight first: a feasible solution used as hint, fallback and fast path."""
    left = {t: {p: len(m) for p, m in pools.items()} for t, pools in free.items()}
    cap_left: dict[tuple[str, str | None, str], int] = {}
    counts: dict[tuple[int, str], int] = {}
    objective = 0
    for ci, cls in enumerate(cands.classes):
        remaining = len(cls.members)
        for machine_type, pools in cls.usable:
            if remaining == 0:
                break
            room = sum(left[machine_type][p] for p in pools)
            for caps, dim, who in ((owner_caps, "o", cls.owner), (run_caps, "r", cls.run)):
                cap = caps.remaining(who, machine_type)
                if cap is not None:
                    room = min(room, cap_left.setdefault((dim, who, machine_type), cap))
            take = min(remaining, room // cls.nodes)
            if take == 0:
                continue
            need = take * cls.nodes
            # Take from the biggest compatible pools first; any split is a valid assignment.
            for pool in sorted(pools, key=lambda p: (-left[machine_type][p], repr(p))):
                used = min(need, left[machine_type][pool])
                left[machine_type][pool] -= used
                need -= used
            for dim, who, caps in (("o", cls.owner, owner_caps), ("r", cls.run, run_caps)):
                if caps.remaining(who, machine_type) is not None:
                    cap_left[(dim, who, machine_type)] -= take * cls.nodes
            counts[(ci, machine_type)] = take
            objective += take * cls.units
            remaining -= take
    return ModelResult(counts, objective, objective, "GREEDY")


def _upper(
    cls: JobClass,
    machine_type: str,
    pools: frozenset[PoolKey],
    free: FreeNodes,
    owner_caps: CapTable,
    run_caps: CapTable,
) -> int:
    room = _room(free, machine_type, pools)
    for caps, who in ((owner_caps, cls.owner), (run_caps, cls.run)):
        cap = caps.remaining(who, machine_type)
        if cap is not None:
            room = min(room, cap)
    return min(len(cls.members), room // cls.nodes)


def solve_counts(
    cands: Candidates,
    free: FreeNodes,
    owner_caps: CapTable,
    run_caps: CapTable,
    settings: SolverSettings,
    hint: ModelResult,
) -> ModelResult:
    """Build and solve the counted model; never raises on infeasibility or time-out."""
    model = cp_model.CpModel()
    xs: dict[tuple[int, str], cp_model.IntVar] = {}
    ubs: dict[tuple[int, str], int] = {}
    uses: dict[str, list[tuple[int, frozenset[PoolKey]]]] = defaultdict(list)
    for ci, cls in enumerate(cands.classes):
        for machine_type, pools in cls.usable:
            ub = _upper(cls, machine_type, pools, free, owner_caps, run_caps)
            if ub > 0:
                xs[(ci, machine_type)] = model.new_int_var(0, ub, f"x{ci}_{machine_type}")
                ubs[(ci, machine_type)] = ub
                uses[machine_type].append((ci, pools))
    n_constraints = 0
    for machine_type, users in uses.items():
        n_constraints += _capacity(model, xs, ubs, cands.classes, machine_type, users, free)
    for ci, cls in enumerate(cands.classes):
        own = [xs[(ci, t)] for t, _ in cls.usable if (ci, t) in xs]
        if len(own) > 1:
            model.add(cp_model.LinearExpr.sum(own) <= len(cls.members))
            n_constraints += 1
    for caps, attr in ((owner_caps, "owner"), (run_caps, "run")):
        terms: dict[tuple[str | None, str], list[tuple[int, tuple[int, str]]]] = defaultdict(list)
        for ci, machine_type in xs:
            cls = cands.classes[ci]
            terms[(getattr(cls, attr), machine_type)].append((cls.nodes, (ci, machine_type)))
        for (who, machine_type), items in terms.items():
            cap = caps.remaining(who, machine_type)
            if cap is None:
                continue
            if sum(n * ubs[k] for n, k in items) > cap:
                model.add(_weighted(xs, items) <= cap)
                n_constraints += 1
    model.maximize(
        cp_model.LinearExpr.weighted_sum(
            list(xs.values()), [cands.classes[ci].units for ci, _ in xs]
        )
    )
    for key, var in xs.items():
        model.add_hint(var, hint.counts.get(key, 0))
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.max_time_in_seconds = settings.time_limit_s
    params.num_workers = settings.num_workers
    params.relative_gap_limit = settings.relative_gap
    params.random_seed = settings.random_seed
    params.log_search_progress = False
    params.cp_model_presolve = len(xs) <= PRESOLVE_MAX_VARS
    status = solver.solve(model)
    name = solver.status_name(status)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        counts = {key: int(solver.value(var)) for key, var in xs.items() if solver.value(var)}
        objective = sum(cands.classes[ci].units * v for (ci, _), v in counts.items())
        bound = (
            objective
            if status == cp_model.OPTIMAL
            else math.ceil(solver.best_objective_bound - 1e-6)
        )
        return ModelResult(counts, objective, max(bound, objective), name, len(xs), n_constraints)
    # No solution in time (or a solver failure): the greedy one is feasible by construction.
    upper = sum(cands.classes[ci].units * ub for (ci, _), ub in ubs.items())
    return ModelResult(dict(hint.counts), hint.objective, upper, "FEASIBLE", len(xs), n_constraints)


def _capacity(
    model: cp_model.CpModel,
    xs: dict[tuple[int, str], cp_model.IntVar],
    ubs: dict[tuple[int, str], int],
    classes: list[JobClass],
    machine_type: str,
    users: list[tuple[int, frozenset[PoolKey]]],
    free: FreeNodes,
) -> int:
    pools = [p for p, m in free[machine_type].items() if m]
    if len(pools) <= 1:
        subsets: list[frozenset[PoolKey]] = [frozenset(pools)]
    elif len(pools) <= MAX_HALL_POOLS:
        subsets = [
            frozenset(c) for r in range(1, len(pools) + 1) for c in itertools.combinations(pools, r)
        ]
    else:
        subsets = sorted({s for _, s in users} | {frozenset(pools)}, key=repr)
    added = 0
    for subset in subsets:
        items = [(classes[ci].nodes, (ci, machine_type)) for ci, s in users if s <= subset]
        if not items:
            continue
        room = _room(free, machine_type, subset)
        if sum(n * ubs[k] for n, k in items) > room:
            model.add(_weighted(xs, items) <= room)
            added += 1
    return added


def _weighted(
    xs: dict[tuple[int, str], cp_model.IntVar], items: list[tuple[int, tuple[int, str]]]
) -> cp_model.LinearExprT:
    """sum(n x var) built in one call (much faster than Python's sum on thousands of terms)."""
    return cp_model.LinearExpr.weighted_sum([xs[k] for _, k in items], [n for n, _ in items])
