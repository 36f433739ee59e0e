"""`solve(snapshot, policy) -> Plan`: one scheduling tick, as a pure function.

No I/O and no clock: time is `snapshot.taken_at` (the wall time in
`SolverStats.wall_s` only measures the solve). Deterministic for the same
input with `solver.num_workers: 1` (the default); more workers may find a
different plan of the same objective.

Steps: index the lab and classify jobs (`lab`), start jobs that need no node,
start or hold for reserved jobs (`reserve`), group the other candidates into
classes (`classes`), solve the counted CP-SAT model (`model`) unless a fast
path proves the greedy optimal, pick concrete nodes (`assign`), let short
jobs with runtime estimates use held nodes (`backfill`, EASY), and explain
every waiting job (`explain`; skipped with `explain=False`, which changes no
decision: the starts and holds are the same either way). Infeasibility and
time-outs are results, not exceptions: the plan then holds the best feasible
solution found.
"""

from __future__ import annotations

import gc
import time

from optialloc.domain import Hold, Plan, Snapshot, SolverStats, Start, Waiting
from optialloc.policy import WEIGHT_RESOLUTION, Policy
from optialloc.solver.assign import assign_nodes
from optialloc.solver.backfill import backfill
from optialloc.solver.caps import build_caps
from optialloc.solver.classes import build_classes
from optialloc.solver.explain import Explainer, pool_counts
from optialloc.solver.lab import OK, build_lab
from optialloc.solver.model import ModelResult, greedy, solve_counts
from optialloc.solver.reserve import apply_reservations

__all__ = ["solve"]


def solve(snapshot: Snapshot, policy: Policy, *, explain: bool = True) -> Plan:
    """Decide this tick's starts and holds and explain every waiting job (see module doc).

    With `explain=False` the plan's `waiting` is empty and `explained` False:
    the same starts and holds, without the per-job positions and reasons
    (a third of a solve with 20,000 queued jobs).
    """
    # A solve allocates a few objects per queued job (hundreds of thousands at 10x
    # Sepia) and frees none of them cyclically; the cyclic GC would rescan the
    # whole heap again and again meanwhile (measured: 0.4 s of 1.5 s at 10x). It is
    # switched off for the solve only and restored, even on error.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _solve(snapshot, policy, explain)
    finally:
        if was_enabled:
            gc.enable()


def _solve(snapshot: Snapshot, policy: Policy, explain: bool) -> Plan:
    began = time.perf_counter()
    lab = build_lab(snapshot, policy)
    free = {t: {p: list(m) for p, m in pools.items()} for t, pools in lab.free.items()}
    before = {t: {p: list(m) for p, m in pools.items()} for t, pools in lab.free.items()}
    owner_caps = build_caps(lab, "owner")
    run_caps = build_caps(lab, "run")

    starts: list[tuple[int, tuple[str, ...]]] = [
        (i, ()) for g in lab.groups if g.state == OK and g.job.nodes_needed == 0 for i in g.members
    ]
    res = apply_reservations(lab, free, owner_caps, run_caps)
    starts.extend(res.starts)
    after_holds = pool_counts(free)
    fixed_units = sum(lab.units(i) for i, _ in starts)

    cands = build_classes(lab, free, set(res.order), owner_caps, run_caps)
    result: ModelResult
    if not cands.classes:
        result = ModelResult({}, 0, 0, "TRIVIAL")
    else:
        hint = greedy(cands, free, owner_caps, run_caps)
        if sum(c for c in hint.counts.values()) == cands.eligible:
            # Every candidate starts: nothing can be better.
            result = ModelResult(hint.counts, hint.objective, hint.objective, "TRIVIAL")
        else:
            result = solve_counts(cands, free, owner_caps, run_caps, policy.solver, hint)
    model_starts = assign_nodes(lab, free, cands, result.counts)
    for index, nodes in model_starts:
        job = lab.jobs[index]
        if nodes:
            machine_type = lab.node_by_name[nodes[0]].machine_type
            owner_caps.add(job.owner, machine_type, job.nodes_needed)
            run_caps.add(job.run, machine_type, job.nodes_needed)
    starts.extend(model_starts)

    started = {i for i, _ in starts}
    backfilled = backfill(lab, before, res, started, owner_caps, run_caps)
    starts.extend(backfilled)
    fixed_units += sum(lab.units(i) for i, _ in backfilled)
    waiting: list[Waiting] = []
    if explain:
        explainer = Explainer(lab, before, after_holds, free, res, owner_caps, run_caps)
        waiting = explainer.waiting(started)
    objective_units = sum(lab.units(i) for i, _ in starts)
    bound_units = fixed_units + result.bound
    if objective_units != fixed_units + result.objective:
        # assignment dropped a job (should not happen): report what the plan really does
        bound_units = max(bound_units, objective_units)
    starts.sort(key=lambda item: lab.order_key(item[0]))
    holds = [
        Hold(node, lab.jobs[index].job_id)
        for index in res.order
        for node in res.holds.get(index, [])
    ]
    return Plan(
        taken_at=snapshot.taken_at,
        starts=tuple(Start(lab.jobs[i].job_id, nodes) for i, nodes in starts),
        held=tuple(holds),
        waiting=tuple(waiting),
        explained=explain,
        solver=SolverStats(
            status=result.status,
            objective=objective_units / WEIGHT_RESOLUTION,
            bound=bound_units / WEIGHT_RESOLUTION,
            wall_s=time.perf_counter() - began,
            variables=result.variables,
            constraints=result.constraints,
        ),
    )
