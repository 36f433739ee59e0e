"""validate_plan / plan_objective: hand-made bad plans are caught with counting messages."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from solver_support import T0, job, nodes, snapshot

from optialloc.check.validator import plan_objective, validate_plan
from optialloc.domain import Hold, Node, Plan, RunningJob, SolverStats, Start, Waiting, WaitReason
from optialloc.policy import policy_from_mapping
from optialloc.ranking import job_weight
from optialloc.solver import solve

POLICY = policy_from_mapping(
    {
        "aging": {"enabled": False},
        "reservations": {"enabled": True, "after_hours": 24, "max_jobs": 2},
        "fairness": {"owner_max_share": 0.5, "run_max_share": 1.0},
        "reimaged_types": ["smithi"],
    }
)

LAB = [
    *nodes("smithi", 3),
    Node("smithi004", "smithi"),  # busy: a running job holds it
    Node("smithi005", "smithi", up=False),
    Node("smithi006", "smithi", locked=True, locked_by="alice@desk"),
    *nodes("mira", 2),
]
RUNNING = (RunningJob(job("r", 1, owner="zed"), ("smithi004",), T0),)


def make_plan(snap, starts=(), held=(), waiting=None, objective=None):  # type: ignore[no-untyped-def]
    """A plan with the given starts; everything else waits (LOWER_PRIORITY) unless given."""
    started = {s.job_id for s in starts}
    if waiting is None:
        rest = [j for j in snap.queue if j.job_id not in started]
        waiting = [Waiting(j.job_id, k, WaitReason.LOWER_PRIORITY) for k, j in enumerate(rest, 1)]
    plan = Plan(
        T0, tuple(starts), tuple(held), tuple(waiting), SolverStats("OPTIMAL", 0.0, 0.0, 0.0)
    )
    value = plan_objective(snap, POLICY, plan) if objective is None else objective
    return replace(plan, solver=replace(plan.solver, objective=value, bound=value))


def check(snap, plan, expected: str) -> list[str]:  # type: ignore[no-untyped-def]
    violations = validate_plan(snap, POLICY, plan)
    assert any(expected in v for v in violations), violations
    return violations


def test_solver_plan_is_valid_and_objective_matches() -> None:
    queue = [job(1, 2, priority=10), job(2, 1, "mira"), job(3, 2, priority=500)]
    snap = snapshot(LAB, queue, running=RUNNING)
    plan = solve(snap, POLICY)
    assert validate_plan(snap, POLICY, plan) == []
    expected = job_weight(queue[0], T0, POLICY) + job_weight(queue[1], T0, POLICY)
    assert plan_objective(snap, POLICY, plan) == pytest.approx(expected, rel=1e-9)
    assert plan.solver.objective == pytest.approx(expected, rel=1e-6)


def test_over_capacity_and_unusable_nodes() -> None:
    snap = snapshot(LAB, [job(1, 3), job(2, 3)], running=RUNNING)
    plan = make_plan(
        snap,
        [
            Start("1", ("smithi001", "smithi002", "smithi003")),
            Start("2", ("smithi004", "smithi005", "smithi006")),
        ],
    )
    violations = check(snap, plan, "smithi: plan uses 6 nodes but only 3 are free")
    assert any("smithi004 is busy" in v for v in violations)
    assert any("smithi005 is down" in v for v in violations)
    assert any("smithi006 is locked by alice@desk" in v for v in violations)


def test_wrong_type_mixed_types_and_wrong_count() -> None:
    snap = snapshot(
        LAB, [job(1, 1, "smithi"), job(2, 2, "smithi,mira"), job(3, 2)], running=RUNNING
    )
    plan = make_plan(
        snap,
        [
            Start("1", ("mira001",)),
            Start("2", ("smithi001", "mira002")),
            Start("3", ("smithi002",)),
        ],
    )
    check(snap, plan, "job 1: node mira001 (mira None None None) does not fit")
    check(snap, plan, "job 2: nodes from 2 machine types (mira, smithi)")
    check(snap, plan, "job 3: given 1 nodes but needs 2")


def test_node_used_twice_and_unknown_node() -> None:
    snap = snapshot(LAB, [job(1, 1), job(2, 1)], running=RUNNING)
    plan = make_plan(snap, [Start("1", ("smithi001",)), Start("2", ("smithi001",))])
    check(snap, plan, "node smithi001: used 2 times by starts and holds")
    plan = make_plan(snap, [Start("1", ("nosuch",))])
    check(snap, plan, "job 1: node nosuch does not exist")


def test_job_both_started_and_waiting_missing_or_unknown() -> None:
    snap = snapshot(LAB, [job(1, 1), job(2, 1)], running=RUNNING)
    both = make_plan(
        snap,
        [Start("1", ("smithi001",))],
        waiting=[
            Waiting("1", 1, WaitReason.LOWER_PRIORITY),
            Waiting("2", 2, WaitReason.LOWER_PRIORITY),
        ],
    )
    check(snap, both, "job 1: appears 2 times in starts and waiting")
    missing = make_plan(snap, [Start("1", ("smithi001",))], waiting=[])
    check(snap, missing, "1 queued job(s) missing from the plan, e.g. 2")
    ghost = make_plan(snap, [Start("1", ("smithi001",)), Start("ghost", ("smithi002",))])
    check(snap, ghost, "job ghost: in the plan but not in the snapshot's queue")
    gaps = make_plan(
        snap,
        waiting=[
            Waiting("1", 1, WaitReason.LOWER_PRIORITY),
            Waiting("2", 3, WaitReason.LOWER_PRIORITY),
        ],
    )
    check(snap, gaps, "waiting positions are not 1..2")


def test_unexplained_plan_checks_its_starts_but_not_the_waiting() -> None:
    """A decisions-only plan (`explain=False`) lists no waiting job; its starts are checked."""
    snap = snapshot(LAB, [job(1, 1), job(2, 1), job(3, 4)], running=RUNNING)
    bare = solve(snap, POLICY, explain=False)
    assert not bare.explained and bare.waiting == () and bare.starts
    assert validate_plan(snap, POLICY, bare) == []
    twice = replace(make_plan(snap, [Start("1", ("smithi001",))] * 2), waiting=(), explained=False)
    check(snap, twice, "job 1: appears 2 times in starts (must be once)")
    ghost = replace(make_plan(snap, [Start("ghost", ("smithi002",))]), waiting=(), explained=False)
    check(snap, ghost, "job ghost: in the plan but not in the snapshot's queue")
    listed = replace(make_plan(snap, [Start("1", ("smithi001",))]), explained=False)
    check(snap, listed, "plan says it is not explained but lists waiting jobs")
    # everything else is checked as for an explained plan
    over = replace(
        make_plan(snap, [Start("1", ("smithi001", "smithi002"))]), waiting=(), explained=False
    )
    check(snap, over, "job 1: given 2 nodes but needs 1")


def test_wrong_objective() -> None:
    snap = snapshot(LAB, [job(1, 1, priority=100)], running=RUNNING)
    plan = make_plan(snap, [Start("1", ("smithi001",))], objective=99.0)
    check(snap, plan, "objective: plan reports 99.000000 but its starts weigh 10.100000")


def test_held_node_given_to_lower_job() -> None:
    queue = [job("big", 4, priority=1000, waited_h=30), job("urgent", 1, priority=10)]
    snap = snapshot(LAB, queue, running=RUNNING)
    good = solve(snap, POLICY)
    assert validate_plan(snap, POLICY, good) == [] and len(good.held) == 3
    bad = make_plan(
        snap,
        [Start("urgent", ("smithi003",))],
        held=[Hold("smithi001", "big"), Hold("smithi002", "big")],
    )
    check(snap, bad, "job big holds 2 of 4 smithi but 1 fitting node(s) went to job urgent")
    idle = make_plan(snap, held=[Hold("smithi001", "big")])
    check(snap, idle, "job big holds 1 of 4 smithi while 2 fitting node(s) stay idle")
    stray = make_plan(snap, held=[Hold("smithi001", "urgent")])
    check(snap, stray, "node smithi001 held for job urgent, which has no reservation")
    both = make_plan(snap, [Start("urgent", ("smithi001",))], held=[Hold("smithi001", "big")])
    check(snap, both, "node smithi001: used 2 times by starts and holds")


def test_fairness_cap_broken() -> None:
    queue = [job(k, 1, owner="alice", priority=10) for k in range(3)] + [job(9, 1, owner="bob")]
    snap = snapshot(LAB, queue, running=RUNNING)
    # base = 3 free + 1 busy = 4 smithi; cap = ceil(0.5 x 4) = 2
    plan = make_plan(snap, [Start(str(k), (f"smithi00{k + 1}",)) for k in range(3)])
    check(snap, plan, "owner alice: holds 3 smithi nodes after this plan, cap is 2 (50% of 4)")
    assert validate_plan(snap, POLICY, solve(snap, POLICY)) == []


def test_last_in_suite_too_early_and_paused_tube() -> None:
    queue = [job("last", 0, run="r1", last_in_suite=True), job("work", 1, run="r1", tube="paused")]
    snap = snapshot(LAB, queue, running=RUNNING, paused_tubes=frozenset({"paused"}))
    plan = make_plan(snap, [Start("last", ()), Start("work", ("smithi001",))])
    check(snap, plan, "job last: last_in_suite started while 1 other job(s) of run r1 are queued")
    check(snap, plan, "job work: started but its tube paused is paused")


def test_invalid_reason_must_match_validity() -> None:
    snap = snapshot(LAB, [job(1, 1, "ovh"), job(2, 1)], running=RUNNING)
    plan = make_plan(
        snap,
        waiting=[Waiting("1", 1, WaitReason.LOWER_PRIORITY), Waiting("2", 2, WaitReason.INVALID)],
    )
    check(snap, plan, "job 1: reason lower_priority but the job is invalid")
    check(snap, plan, "job 2: reason invalid but the job is valid")


def test_plan_for_another_snapshot() -> None:
    snap = snapshot(LAB, [job(1, 1)], running=RUNNING)
    plan = replace(solve(snap, POLICY), taken_at=T0 + timedelta(seconds=1))
    check(snap, plan, "is for another snapshot")
