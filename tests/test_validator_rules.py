"""A second, independent test for each validator rule tests/test_validator.py checks once
(and a first one for the hold rules it did not check).

Each test builds its own small lab (nothing shared with test_validator.py), a
plan the validator must accept, and the same plan with exactly one thing
wrong, which must give exactly one violation naming it. So a rule that stops
firing, fires one node too late, or fires on a valid plan fails here; only
the public `validate_plan` is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest
from solver_support import T0, job, nodes, snapshot

from optialloc.check.validator import plan_objective, validate_plan
from optialloc.domain import (
    Hold,
    Job,
    Node,
    Plan,
    RunningJob,
    Snapshot,
    SolverStats,
    Start,
    Waiting,
    WaitReason,
)
from optialloc.policy import Policy, policy_from_mapping

PLAIN = policy_from_mapping(
    {
        "aging": {"enabled": False},
        "reservations": {"enabled": False},
        "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0},
        "reimaged_types": ["mira", "smithi"],
    }
)


def fairness(**shares: object) -> Policy:
    return policy_from_mapping(
        {
            "aging": {"enabled": False},
            "reservations": {"enabled": False},
            "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0, **shares},
            "reimaged_types": ["mira", "smithi"],
        }
    )


def plan_for(
    snap: Snapshot,
    policy: Policy,
    starts: Sequence[Start] = (),
    held: Sequence[Hold] = (),
    waiting: Sequence[Waiting] | None = None,
) -> Plan:
    """The plan with these starts and holds; every other job waits (lower priority), in
    queue order; the objective is what the starts weigh."""
    if waiting is None:
        started = {s.job_id for s in starts}
        rest = [j for j in snap.queue if j.job_id not in started]
        waiting = [Waiting(j.job_id, k, WaitReason.LOWER_PRIORITY) for k, j in enumerate(rest, 1)]
    plan = Plan(
        snap.taken_at,
        tuple(starts),
        tuple(held),
        tuple(waiting),
        SolverStats("OPTIMAL", 0.0, 0.0, 0.0),
    )
    value = plan_objective(snap, policy, plan)
    return replace(plan, solver=replace(plan.solver, objective=value, bound=value))


def accepted(snap: Snapshot, policy: Policy, plan: Plan) -> None:
    assert validate_plan(snap, policy, plan) == []


def one_violation(snap: Snapshot, policy: Policy, plan: Plan) -> str:
    violations = validate_plan(snap, policy, plan)
    assert len(violations) == 1, violations
    return violations[0]


# -- node states --------------------------------------------------------------


def test_a_down_node_of_a_two_node_start_is_refused() -> None:
    lab = [*nodes("mira", 2), Node("mira003", "mira", up=False)]
    snap = snapshot(lab, [job("pair", 2, "mira", owner="dora")])
    accepted(snap, PLAIN, plan_for(snap, PLAIN, [Start("pair", ("mira001", "mira002"))]))
    bad = plan_for(snap, PLAIN, [Start("pair", ("mira001", "mira003"))])
    assert one_violation(snap, PLAIN, bad) == "job pair: node mira003 is down"


def test_a_node_down_and_locked_counts_as_down_and_a_locked_node_is_refused() -> None:
    lab = [
        Node("smithi001", "smithi"),
        Node("smithi002", "smithi", locked=True, locked_by="bob@desk"),
        Node("smithi003", "smithi", up=False, locked=True, locked_by="bob@desk"),
    ]
    snap = snapshot(lab, [job("j", 1)])
    accepted(snap, PLAIN, plan_for(snap, PLAIN, [Start("j", ("smithi001",))]))
    locked = plan_for(snap, PLAIN, [Start("j", ("smithi002",))])
    assert one_violation(snap, PLAIN, locked) == "job j: node smithi002 is locked by bob@desk"
    both = plan_for(snap, PLAIN, [Start("j", ("smithi003",))])
    assert one_violation(snap, PLAIN, both) == "job j: node smithi003 is down"


def test_a_node_of_a_running_job_is_busy() -> None:
    lab = nodes("mira", 2)
    running = (RunningJob(job("old", 1, "mira"), ("mira002",), T0 - timedelta(hours=1)),)
    snap = snapshot(lab, [job("new", 1, "mira")], running=running)
    accepted(snap, PLAIN, plan_for(snap, PLAIN, [Start("new", ("mira001",))]))
    bad = plan_for(snap, PLAIN, [Start("new", ("mira002",))])
    assert one_violation(snap, PLAIN, bad) == "job new: node mira002 is busy with a running job"


# -- where a job may run --------------------------------------------------------------


def test_a_job_on_a_node_with_another_os_does_not_fit() -> None:
    # vps is not reimaged: the node's OS must be the job's
    lab = [
        Node("vps01", "vps", os_type="ubuntu", os_version="22.04"),
        Node("vps02", "vps", os_type="centos", os_version="9"),
    ]
    snap = snapshot(lab, [job("u", 1, "vps", os_type="ubuntu", os_version="22.04")])
    accepted(snap, PLAIN, plan_for(snap, PLAIN, [Start("u", ("vps01",))]))
    bad = plan_for(snap, PLAIN, [Start("u", ("vps02",))])
    assert one_violation(snap, PLAIN, bad) == (
        "job u: node vps02 (vps centos 9 None) does not fit the job's types/OS/arch"
    )


def test_a_job_listing_two_types_still_gets_nodes_of_one() -> None:
    lab = [*nodes("smithi", 2), *nodes("mira", 2)]
    snap = snapshot(lab, [job("multi", 2, "smithi,mira")])
    accepted(snap, PLAIN, plan_for(snap, PLAIN, [Start("multi", ("mira001", "mira002"))]))
    bad = plan_for(snap, PLAIN, [Start("multi", ("smithi001", "mira002"))])
    assert one_violation(snap, PLAIN, bad) == "job multi: nodes from 2 machine types (mira, smithi)"


def test_capacity_counts_starts_and_holds_against_free_nodes() -> None:
    # One free smithi: a start on it plus a start on a missing smithi is over capacity.
    lab = [Node("smithi001", "smithi"), Node("smithi002", "smithi", up=False)]
    snap = snapshot(lab, [job("a", 1), job("b", 1)])
    accepted(snap, PLAIN, plan_for(snap, PLAIN, [Start("a", ("smithi001",))]))
    bad = plan_for(snap, PLAIN, [Start("a", ("smithi001",)), Start("b", ("smithi002",))])
    violations = validate_plan(snap, PLAIN, bad)
    assert "smithi: plan uses 2 nodes but only 1 are free" in violations
    assert "job b: node smithi002 is down" in violations and len(violations) == 2


def test_a_node_missing_from_the_lab_is_refused() -> None:
    snap = snapshot(nodes("mira", 1), [job("j", 1, "mira")])
    accepted(snap, PLAIN, plan_for(snap, PLAIN, [Start("j", ("mira001",))]))
    bad = plan_for(snap, PLAIN, [Start("j", ("mira009",))])
    assert one_violation(snap, PLAIN, bad) == "job j: node mira009 does not exist"


# -- the queue's own rules -------------------------------------------------------------


def test_a_job_of_a_paused_tube_may_not_start_but_its_tubemates_elsewhere_may() -> None:
    queue = [job("p", 1, tube="nightly"), job("q", 1, tube="smithi")]
    snap = snapshot(nodes("smithi", 2), queue, paused_tubes=frozenset({"nightly"}))
    accepted(snap, PLAIN, plan_for(snap, PLAIN, [Start("q", ("smithi001",))]))
    bad = plan_for(snap, PLAIN, [Start("q", ("smithi001",)), Start("p", ("smithi002",))])
    assert one_violation(snap, PLAIN, bad) == "job p: started but its tube nightly is paused"


def test_last_in_suite_waits_for_a_running_job_of_its_run() -> None:
    running = (RunningJob(job("w", 1, run="suite-x"), ("smithi002",), T0),)
    last = job("last", 0, run="suite-x", last_in_suite=True)
    snap = snapshot(nodes("smithi", 2), [last], running=running)
    bad = plan_for(snap, PLAIN, [Start("last", ())])
    assert one_violation(snap, PLAIN, bad) == (
        "job last: last_in_suite started while 1 other job(s) of run suite-x are queued or running"
    )
    done = snapshot(nodes("smithi", 2), [last])  # the run's other job has ended
    accepted(done, PLAIN, plan_for(done, PLAIN, [Start("last", ())]))


# -- what the plan says about waiting jobs, and its objective ----------------------------


def test_a_valid_job_called_invalid_and_an_invalid_one_called_waiting() -> None:
    # needs 3 mira; the lab has 2: invalid for this lab
    snap = snapshot(nodes("mira", 2), [job("big", 3, "mira"), job("small", 1, "mira")])
    right = [Waiting("big", 1, WaitReason.INVALID), Waiting("small", 2, WaitReason.LOWER_PRIORITY)]
    accepted(snap, PLAIN, plan_for(snap, PLAIN, waiting=right))
    swapped = [
        Waiting("big", 1, WaitReason.LOWER_PRIORITY),
        Waiting("small", 2, WaitReason.LOWER_PRIORITY),
    ]
    assert one_violation(snap, PLAIN, plan_for(snap, PLAIN, waiting=swapped)) == (
        "job big: reason lower_priority but the job is invalid for this lab"
    )


def test_a_waiting_job_left_out_and_positions_with_a_gap() -> None:
    snap = snapshot(nodes("smithi", 1), [job("a", 1), job("b", 1), job("c", 1)])
    listed = [
        Waiting("b", 1, WaitReason.LOWER_PRIORITY),
        Waiting("c", 2, WaitReason.NOT_ENOUGH_NODES),
    ]
    accepted(snap, PLAIN, plan_for(snap, PLAIN, [Start("a", ("smithi001",))], waiting=listed))
    left_out = plan_for(snap, PLAIN, [Start("a", ("smithi001",))], waiting=listed[:1])
    assert one_violation(snap, PLAIN, left_out) == ("1 queued job(s) missing from the plan, e.g. c")
    gap = [listed[0], Waiting("c", 3, WaitReason.NOT_ENOUGH_NODES)]
    assert (
        one_violation(
            snap, PLAIN, plan_for(snap, PLAIN, waiting=gap, starts=[Start("a", ("smithi001",))])
        )
        == "waiting positions are not 1..2"
    )


def test_an_objective_that_leaves_out_a_start_is_refused() -> None:
    snap = snapshot(nodes("mira", 2), [job("a", 1, "mira"), job("b", 1, "mira", priority=10)])
    plan = plan_for(snap, PLAIN, [Start("a", ("mira001",)), Start("b", ("mira002",))])
    accepted(snap, PLAIN, plan)
    only_a = plan_objective(snap, PLAIN, plan_for(snap, PLAIN, [Start("a", ("mira001",))]))
    short = replace(plan, solver=replace(plan.solver, objective=only_a))
    assert one_violation(snap, PLAIN, short).startswith(f"objective: plan reports {only_a:.6f}")


def test_a_plan_for_an_earlier_snapshot_is_refused_whole() -> None:
    snap = snapshot(nodes("mira", 1), [job("a", 1, "mira")])
    plan = plan_for(snap, PLAIN, [Start("a", ("mira001",))])
    accepted(snap, PLAIN, plan)
    later = replace(snap, taken_at=T0 + timedelta(minutes=1))
    [violation] = validate_plan(later, PLAIN, plan)
    assert "is for another snapshot" in violation


# -- fairness caps -------------------------------------------------------------


def test_run_cap_counts_running_jobs_and_binds_one_node_over() -> None:
    """Run caps (the other test covers owners): 8 mira (6 free, 2 running `nightly`),
    run_max_share 0.5: cap 4 while another run waits, so 2 more starts are fine, 3 not."""
    lab = nodes("mira", 8)
    running = tuple(
        RunningJob(job(f"r{k}", 1, "mira", run="nightly"), (f"mira00{k}",), T0) for k in (7, 8)
    )
    queue = [job(f"n{k}", 1, "mira", run="nightly", owner=f"o{k}") for k in range(4)]
    queue.append(job("x", 1, "mira", run="other", owner="zed", priority=2000))
    snap = snapshot(lab, queue, running=running)
    policy = fairness(run_max_share=0.5)
    starts = [Start(f"n{k}", (f"mira00{k + 1}",)) for k in range(3)]
    accepted(snap, policy, plan_for(snap, policy, starts[:2]))
    assert one_violation(snap, policy, plan_for(snap, policy, starts)) == (
        "run nightly: holds 5 mira nodes after this plan, cap is 4 (50% of 8) while others wait"
    )
    # the same plan with nobody else waiting for mira: no cap
    alone = replace(snap, queue=tuple(queue[:4]))
    accepted(alone, policy, plan_for(alone, policy, starts))


def test_owner_cap_is_never_below_the_owners_largest_job() -> None:
    """owner_max_share 0.25 of 8 smithi is 2, but alice's 3-node job may start: her cap is 3,
    and one node more (a 1-node job beside it) breaks it."""
    queue = [job("big", 3), job("one", 1), job("bob", 1, owner="bob")]
    snap = snapshot(nodes("smithi", 8), queue)
    policy = fairness(owner_max_share=0.25)
    big = Start("big", ("smithi001", "smithi002", "smithi003"))
    accepted(snap, policy, plan_for(snap, policy, [big]))
    over = plan_for(snap, policy, [big, Start("one", ("smithi004",))])
    assert one_violation(snap, policy, over) == (
        "owner alice: holds 4 smithi nodes after this plan, cap is 3 (25% of 8) while others wait"
    )


@pytest.mark.parametrize(("rival_priority", "capped"), [(100, True), (50, True), (500, False)])
def test_peers_only_caps_bind_only_for_a_rival_as_urgent(rival_priority: int, capped: bool) -> None:
    """With peers_only, bob's waiting job caps alice (2 of 4 mira) only when it is at least
    as urgent as alice's best job (teuthology: a lower number is more urgent)."""
    queue: list[Job] = [job(f"a{k}", 1, "mira", priority=100) for k in range(3)]
    queue.append(job("b", 1, "mira", owner="bob", priority=rival_priority))
    snap = snapshot(nodes("mira", 4), queue)
    policy = fairness(owner_max_share=0.5, peers_only=True)
    plan = plan_for(snap, policy, [Start(f"a{k}", (f"mira00{k + 1}",)) for k in range(3)])
    if capped:
        assert one_violation(snap, policy, plan) == (
            "owner alice: holds 3 mira nodes after this plan, cap is 2 (50% of 4) while others wait"
        )
    else:
        accepted(snap, policy, plan)


# -- holds (reservations) -------------------------------------------------------------

RESERVE = policy_from_mapping(
    {
        "aging": {"enabled": False},
        "reservations": {
            "enabled": True,
            "after_hours": 24,
            "max_jobs": 1,
            "head_of_queue": False,
            "backfill": False,
        },
        "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0},
        "reimaged_types": ["smithi"],
    }
)


def starved_lab() -> Snapshot:
    """A starved 3-node job, 2 free smithi (both must be held for it), a fresh 1-node job,
    and a vps whose OS does not fit the starved job."""
    lab = [
        *nodes("smithi", 2),
        Node("smithi003", "smithi", up=False),
        Node("vps01", "vps", os_type="centos", os_version="9"),
    ]
    queue = [job("big", 3, "smithi,vps", os_type="ubuntu", waited_h=30), job("new", 1)]
    return snapshot(lab, queue)


GOOD_HOLDS = [Hold("smithi001", "big"), Hold("smithi002", "big")]


def test_holds_for_the_starved_job_are_accepted() -> None:
    snap = starved_lab()
    accepted(snap, RESERVE, plan_for(snap, RESERVE, held=GOOD_HOLDS))


def test_a_fitting_node_given_away_from_a_reservation() -> None:
    snap = starved_lab()
    bad = plan_for(snap, RESERVE, [Start("new", ("smithi002",))], held=GOOD_HOLDS[:1])
    assert one_violation(snap, RESERVE, bad) == (
        "job big holds 1 of 3 smithi but 1 fitting node(s) went to job new"
    )


def test_a_hold_on_a_node_that_does_not_fit_or_is_down() -> None:
    snap = starved_lab()
    unfit = plan_for(snap, RESERVE, held=[*GOOD_HOLDS, Hold("vps01", "big")])
    assert one_violation(snap, RESERVE, unfit) == "node vps01 held for job big but does not fit it"
    down = plan_for(snap, RESERVE, held=[*GOOD_HOLDS, Hold("smithi003", "big")])
    assert validate_plan(snap, RESERVE, down) == [
        "smithi: plan uses 3 nodes but only 2 are free",
        "hold for job big: node smithi003 is down",
    ]


def test_a_hold_for_a_job_that_starts_now_or_a_job_not_queued() -> None:
    lab = nodes("smithi", 4)
    snap = snapshot(lab, [job("big", 3, waited_h=30), job("new", 1)])
    start = Start("big", ("smithi001", "smithi002", "smithi003"))
    accepted(snap, RESERVE, plan_for(snap, RESERVE, [start]))
    both = plan_for(snap, RESERVE, [start], held=[Hold("smithi004", "big")])
    assert one_violation(snap, RESERVE, both) == (
        "node smithi004 held for job big, which starts now"
    )
    ghost = plan_for(snap, RESERVE, [start], held=[Hold("smithi004", "gone")])
    assert one_violation(snap, RESERVE, ghost) == "hold of smithi004 for gone: unknown node or job"
