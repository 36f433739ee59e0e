"""Every waiting-reason kind, read as a person reads it: the text states exactly what blocks.

One small snapshot per kind (`optialloc.domain.WaitReason`); the assertion is on
the whole detail text, so a reason that blames the wrong thing (issue 14:
"given to higher-priority jobs" when a lower-priority job took the node,
"0 held for it", a cap quoted without the room left under it) fails here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from solver_support import T0, job, nodes, snapshot, solve_checked

from optialloc.domain import Node, Plan, RunningJob, WaitReason
from optialloc.policy import Policy, policy_from_mapping

PLAIN = policy_from_mapping(
    {
        "aging": {"enabled": False},
        "reservations": {"enabled": False},
        "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0},
    }
)
RESERVING = policy_from_mapping(
    {
        "aging": {"enabled": False},
        "reservations": {"enabled": True, "after_hours": 24, "max_jobs": 2},
        "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0},
    }
)


def with_fairness(**values: float) -> Policy:
    return replace(PLAIN, fairness=replace(PLAIN.fairness, **values))


def why(plan: Plan, job_id: str) -> tuple[WaitReason, str]:
    (entry,) = [w for w in plan.waiting if w.job_id == job_id]
    return entry.reason, entry.detail


def test_lower_priority_says_this_ticks_starts_took_the_nodes_whatever_their_priority() -> None:
    # job 3 (priority 5000, less urgent than job 2) takes the third node: not "higher-priority"
    queue = [job(1, 2, priority=10), job(2, 2, priority=20), job(3, 1, priority=5000)]
    plan = solve_checked(snapshot(nodes("smithi", 3), queue), PLAIN)
    assert {s.job_id for s in plan.starts} == {"1", "3"}
    assert why(plan, "2") == (
        WaitReason.LOWER_PRIORITY,
        "needs 2 smithi, 3 free, 3 taken by this tick's starts, 0 left",
    )


def test_not_enough_nodes() -> None:
    lab = [*nodes("smithi", 3), Node("smithi009", "smithi", locked=True, locked_by="bob")]
    plan = solve_checked(snapshot(lab, [job(1, 4)]), PLAIN)
    assert why(plan, "1") == (WaitReason.NOT_ENOUGH_NODES, "needs 4 smithi, 3 free smithi")


def test_reserved_with_nodes_held_and_the_job_they_are_held_from() -> None:
    running = (RunningJob(job("r", 2), ("smithi003", "smithi004"), T0),)
    queue = [job("big", 4, priority=1000, waited_h=30), job("urgent", 1, priority=10)]
    plan = solve_checked(snapshot(nodes("smithi", 4), queue, running=running), RESERVING)
    assert why(plan, "big") == (
        WaitReason.NOT_ENOUGH_NODES,
        "reserved: needs 4 smithi, 2 held for it, waits for 2 more",
    )
    reason, detail = why(plan, "urgent")
    assert reason == WaitReason.HELD_FOR_JOB
    assert detail.startswith("needs 1 smithi, 2 free, 2 held for job(s) big")


def test_reserved_with_nothing_free_to_hold_does_not_say_0_held() -> None:
    running = tuple(RunningJob(job(f"r{k}", 1), (f"smithi00{k}",), T0) for k in range(1, 5))
    plan = solve_checked(
        snapshot(nodes("smithi", 4), [job("big", 2, priority=1000, waited_h=30)], running=running),
        RESERVING,
    )
    assert plan.held == ()
    assert why(plan, "big") == (
        WaitReason.NOT_ENOUGH_NODES,
        "reserved: needs 2 smithi, none free to hold yet; the next 2 that free up are held for it",
    )


def test_lower_priority_to_a_starved_job() -> None:
    queue = [job("big", 4, priority=1000, waited_h=30), job("urgent", 1, priority=10)]
    plan = solve_checked(snapshot(nodes("smithi", 4), queue), RESERVING)
    reason, detail = why(plan, "urgent")
    assert reason == WaitReason.LOWER_PRIORITY
    assert detail.startswith(
        "needs 1 smithi, 4 free, 4 given to starved job(s) big "
        "(waited past their reservation threshold)"
    )


def test_run_cap_says_how_much_room_is_left_under_it() -> None:
    # the run holds 2 of its cap of 3: a 2-node job does not fit under it (1 left)
    running = tuple(
        RunningJob(job(f"r{k}", 1, run="nightly", owner=f"o{k}"), (f"smithi00{k}",), T0)
        for k in (1, 2)
    )
    queue = [
        job("two", 2, run="nightly", owner="x", priority=10),
        job("other", 1, run="small", priority=900),
    ]
    plan = solve_checked(
        snapshot(nodes("smithi", 10), queue, running=running), with_fairness(run_max_share=0.3)
    )
    assert why(plan, "two") == (
        WaitReason.RUN_OVER_SHARE,
        "run nightly holds 2 smithi nodes, cap 3 while others wait: "
        "1 left under the cap, this job needs 2",
    )


def test_owner_cap() -> None:
    alice = [job(k, 1, owner="alice", priority=10) for k in range(5)]
    plan = solve_checked(
        snapshot(nodes("smithi", 10), [*alice, job(9, 1, owner="bob", priority=500)]),
        with_fairness(owner_max_share=0.3),
    )
    assert why(plan, "4") == (
        WaitReason.OWNER_OVER_SHARE,
        "owner alice holds 3 smithi nodes, cap 3 while others wait: "
        "0 left under the cap, this job needs 1",
    )


def test_waiting_for_run_paused_and_invalid() -> None:
    queue = [job("last", 0, run="r1", last_in_suite=True), job("work", 1, run="r1")]
    plan = solve_checked(snapshot([], queue), PLAIN)
    assert why(plan, "last") == (
        WaitReason.WAITING_FOR_RUN,
        "last_in_suite: 1 other job(s) of run r1 not done",
    )
    assert why(plan, "work") == (WaitReason.INVALID, "no smithi node exists")
    paused = snapshot(nodes("smithi", 2), [job(1, 1)], paused_tubes=frozenset({"smithi"}))
    assert why(solve_checked(paused, PLAIN), "1") == (
        WaitReason.TUBE_PAUSED,
        "tube smithi is paused",
    )
    too_big = solve_checked(snapshot(nodes("smithi", 2), [job(3, 3)]), PLAIN)
    assert why(too_big, "3") == (WaitReason.INVALID, "needs 3 smithi, lab has 2")


def test_every_reason_kind_is_covered_here() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    for kind in WaitReason:
        assert f"WaitReason.{kind.name}" in source, f"no text test for {kind.name}"
