"""`reservations.relative_after_hours` / `relative_factor`: a multi-node job that waits
much longer than the smaller jobs of its priority is starved early. What the solver
reserves with and without the rule, and that the independent validator rejects a hold
the rule does not grant."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from solver_support import T0, job, nodes

from optialloc.check.validator import validate_plan
from optialloc.domain import Job, Plan, RunningJob, Snapshot
from optialloc.errors import PolicyError
from optialloc.policy import Policy, policy_from_mapping
from optialloc.ranking import reservation_threshold_s
from optialloc.solver import solve

#: a lab where PR work starves after 1.5 h, a priority-500 job after 17 h, a nightly after 48 h
RULES = {"after_hours": 48.0, "priority_scaled": True, "priority_exponent": 1.5}


def policy(after: float | None = 1.0, **rules: Any) -> Policy:
    res: dict[str, Any] = {**RULES, **rules}
    if after is not None:
        res["relative_after_hours"] = after
    return policy_from_mapping(
        {
            "aging": {"enabled": False},
            "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0},
            "reservations": res,
        }
    )


def lab_snapshot(queue: list[Job]) -> Snapshot:
    """smithi001-004 (001-003 busy) and mira001-003 (busy): one free node, smithi004."""
    running = [
        RunningJob(job(f"r{k}", 1, owner="ops", run="old"), (f"smithi{k:03d}",), T0)
        for k in (1, 2, 3)
    ]
    running.append(
        RunningJob(
            job("rm", 3, "mira", owner="ops", run="old"), ("mira001", "mira002", "mira003"), T0
        )
    )
    lab = nodes("smithi", 4) + nodes("mira", 3)
    return Snapshot(T0, tuple(lab), tuple(queue), tuple(running))


def held_for(plan: Plan) -> set[str]:
    return {h.for_job_id for h in plan.held}


def big(waited_h: float = 2.0, priority: int = 500, nodes_needed: int = 4) -> Job:
    return job("big", nodes_needed, priority=priority, waited_h=waited_h, run="mid")


def peer(waited_h: float, priority: int = 500, nodes_needed: int = 1) -> Job:
    """A smaller job of the big job's run that cannot start (mira is busy)."""
    return job("peer", nodes_needed, "mira", priority=priority, waited_h=waited_h, run="mid")


def test_a_big_job_left_behind_is_reserved_long_before_its_threshold() -> None:
    assert reservation_threshold_s(500, policy()) == pytest.approx(48 * 0.5**1.5 * 3600)
    # its 1-node peers all started (none queued): after 2 h > 1 h it is starved
    snap = lab_snapshot([big(2.0)])
    on, off = policy(), policy(None)
    plan = solve(snap, on)
    assert held_for(plan) == {"big"}
    assert validate_plan(snap, on, plan) == []
    assert held_for(solve(snap, off)) == set()
    assert any("has no reservation" in v for v in validate_plan(snap, off, plan))
    # a younger smaller peer of its priority still waiting: it was overtaken all the same
    snap = lab_snapshot([big(2.0), peer(1.0)])
    plan = solve(snap, on)
    assert held_for(plan) == {"big"}
    assert validate_plan(snap, on, plan) == []


def test_a_big_job_with_an_older_or_equal_smaller_peer_waiting_is_not_starved() -> None:
    on = policy()
    starved = solve(lab_snapshot([big(2.0)]), on)
    for waited_h in (2.0, 3.0):  # same queued_at (one run) or older: FIFO among equals holds
        snap = lab_snapshot([big(2.0), peer(waited_h)])
        plan = solve(snap, on)
        assert held_for(plan) == set()
        assert validate_plan(snap, on, plan) == []
        # the validator refuses the hold the rule does not grant
        forged = replace(plan, held=starved.held)
        assert any("has no reservation" in v for v in validate_plan(snap, on, forged))
    # only 1-node jobs are the measure: a waiting 2-node or 3-node peer does not protect it
    for n in (2, 3):
        snap = lab_snapshot([big(2.0), peer(3.0, nodes_needed=n)])
        plan = solve(snap, on)
        assert held_for(plan) == {"big"}
        assert validate_plan(snap, on, plan) == []


def test_only_1_node_jobs_of_the_same_priority_count_and_the_floor_holds() -> None:
    on = policy()
    # an older 1-node job of another priority does not protect the big job's wait
    snap = lab_snapshot([big(2.0), peer(3.0, priority=400)])
    assert held_for(solve(snap, on)) == {"big"}
    assert validate_plan(snap, on, solve(snap, on)) == []
    # under the floor: not starved, whatever overtook it
    young = lab_snapshot([big(0.5)])
    assert held_for(solve(young, on)) == set()
    assert held_for(solve(young, policy(0.25))) == {"big"}
    # a 1-node job is never starved by this rule (nothing needs fewer nodes)
    single = lab_snapshot([job("one", 1, "mira", priority=500, waited_h=5.0)])
    assert validate_plan(single, on, solve(single, on)) == []
    assert solve(single, on).held == ()


def test_the_factor_compares_with_the_longest_smaller_wait() -> None:
    # big waited 2 h; with factor 3 a smaller peer waiting 1 h keeps it unstarved
    # (2 <= 3 x 1), one waiting 0.5 h does not (2 > 1.5)
    three = policy(relative_factor=3.0)
    slow = lab_snapshot([big(2.0), peer(1.0)])
    plan = solve(slow, three)
    assert held_for(plan) == set()
    assert validate_plan(slow, three, plan) == []
    assert any("has no reservation" in v for v in validate_plan(slow, three, solve(slow, policy())))
    fast = lab_snapshot([big(2.0), peer(0.5)])
    plan = solve(fast, three)
    assert held_for(plan) == {"big"}
    assert validate_plan(fast, three, plan) == []
    with pytest.raises(PolicyError) as err:
        policy(relative_factor=0.5)
    assert err.value.field == "reservations.relative_factor"


def test_a_running_peer_counts_with_the_wait_it_had() -> None:
    # a 1-node peer of its priority that waited 3 h before it started: the big job
    # (2 h) is not left behind; one that started at once: it is
    on = policy()

    def with_peer(waited_before_start_h: float) -> Snapshot:
        snap = lab_snapshot([big(2.0)])
        started = T0 - timedelta(minutes=10)
        queued = started - timedelta(hours=waited_before_start_h)
        ran = job("ran", 1, "mira", priority=500, run="mid", taken_at=queued)
        running = (*snap.running[:-1], RunningJob(ran, ("mira001",), started))
        return replace(snap, running=running)

    slow = with_peer(3.0)
    plan = solve(slow, on)
    assert held_for(plan) == set()
    assert validate_plan(slow, on, plan) == []
    fast = with_peer(0.0)
    plan = solve(fast, on)
    assert held_for(plan) == {"big"}
    assert validate_plan(fast, on, plan) == []
    assert any("has no reservation" in v for v in validate_plan(slow, on, plan))


def test_the_knob_is_validated() -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_mapping({"reservations": {"relative_after_hours": -1}})
    assert err.value.field == "reservations.relative_after_hours"
    assert policy(None).reservations.relative_after_hours is None
    assert policy(2.0).reservations.relative_after_hours == 2.0
    # the rule also applies with unscaled thresholds (oldest first)
    flat = policy(1.0, priority_scaled=False, after_hours=24.0)
    snap = lab_snapshot([big(2.0)])
    assert held_for(solve(snap, flat)) == {"big"}
    assert validate_plan(snap, flat, solve(snap, flat)) == []
    assert held_for(solve(snap, policy(None, priority_scaled=False, after_hours=24.0))) == set()


def test_the_rule_keeps_a_stable_rank() -> None:
    # Two overtaken big jobs, one slot: the one queued first keeps it however the
    # other's peers come and go (the rank is queued_at + order, as for any starved job).
    on = policy(max_jobs=1)
    first = job("first", 4, priority=500, waited_h=3.0, run="a")
    second = job("second", 4, priority=500, waited_h=2.0, run="b")
    for queue in ([first, second], [first, second, peer(1.0)]):
        snap = lab_snapshot(queue)
        plan = solve(snap, on)
        assert held_for(plan) == {"first"}
        assert validate_plan(snap, on, plan) == []
    # not reserved while it waits behind an older smaller job of its priority
    snap = lab_snapshot([first, second, peer(3.5)])
    assert held_for(solve(snap, on)) == set()
    plan = solve(snap, on)
    assert validate_plan(snap, on, plan) == []
