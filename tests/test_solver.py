"""solve(): one feasible and one infeasible case per constraint family, each plan validated."""

from __future__ import annotations

from dataclasses import replace

import pytest
from solver_support import T0, job, nodes, snapshot, solve_checked

from optialloc.domain import Node, RunningJob, WaitReason
from optialloc.policy import Policy, policy_from_mapping
from optialloc.solver import solve

#: Plain weights: no aging, caps, holds or usage penalty unless a test turns them on.
PLAIN = policy_from_mapping(
    {
        "aging": {"enabled": False},
        "reservations": {"enabled": False},
        "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0},
        "reimaged_types": ["smithi", "mira"],
    }
)


def with_(policy: Policy, **sections: dict) -> Policy:
    return replace(policy, **{k: replace(getattr(policy, k), **v) for k, v in sections.items()})


def reasons(plan) -> dict[str, WaitReason]:  # type: ignore[no-untyped-def]
    return {w.job_id: w.reason for w in plan.waiting}


def started(plan) -> dict[str, tuple[str, ...]]:  # type: ignore[no-untyped-def]
    return {s.job_id: s.nodes for s in plan.starts}


def test_node_counts_fit_and_overflow() -> None:
    snap = snapshot(nodes("smithi", 3), [job(1, 2, priority=10), job(2, 2, priority=20), job(3, 1)])
    plan = solve_checked(snap, PLAIN)
    assert started(plan) == {"1": ("smithi001", "smithi002"), "3": ("smithi003",)}
    assert reasons(plan) == {"2": WaitReason.LOWER_PRIORITY}
    assert plan.solver.status in ("OPTIMAL", "TRIVIAL")
    # Infeasible: more than free, less than the lab has.
    lab = [*nodes("smithi", 3), Node("smithi009", "smithi", locked=True, locked_by="bob")]
    plan = solve_checked(snapshot(lab, [job(1, 4)]), PLAIN)
    assert plan.starts == ()
    assert plan.waiting[0].reason == WaitReason.NOT_ENOUGH_NODES
    assert "needs 4 smithi, 3 free" in plan.waiting[0].detail


def test_everything_fits_fast_path_is_optimal() -> None:
    snap = snapshot(nodes("smithi", 10), [job(k, 2) for k in range(5)])
    plan = solve_checked(snap, PLAIN)
    assert len(plan.starts) == 5 and plan.waiting == ()
    assert plan.solver.status == "TRIVIAL" and plan.solver.gap == 0.0


def test_machine_type_and_invalid_jobs() -> None:
    lab = [*nodes("smithi", 2), Node("mira001", "mira", locked=True, locked_by="someone")]
    queue = [job(1, 1, "mira"), job(2, 1, "ovh"), job(3, 3, "smithi"), job(4, 1, "smithi")]
    plan = solve_checked(snapshot(lab, queue), PLAIN)
    assert started(plan) == {"4": ("smithi001",)}
    got = {w.job_id: (w.reason, w.detail) for w in plan.waiting}
    assert got["1"][0] == WaitReason.NOT_ENOUGH_NODES
    assert got["2"] == (WaitReason.INVALID, "no ovh node exists")
    assert got["3"] == (WaitReason.INVALID, "needs 3 smithi, lab has 2")


def test_multi_type_jobs_use_one_type() -> None:
    lab = nodes("smithi", 2) + nodes("mira", 2)
    plan = solve_checked(
        snapshot(lab, [job(1, 2, "smithi,mira", priority=1), job(2, 2, "smithi")]), PLAIN
    )
    assert started(plan) == {"1": ("mira001", "mira002"), "2": ("smithi001", "smithi002")}
    # 2 + 2 free across types is not 3 of one type.
    lab.append(Node("mira003", "mira", locked=True, locked_by="carol"))
    plan = solve_checked(snapshot(lab, [job(1, 3, "smithi,mira")]), PLAIN)
    assert plan.starts == () and plan.waiting[0].reason == WaitReason.NOT_ENOUGH_NODES


def test_os_and_arch_on_reimaged_and_fixed_types() -> None:
    vps = [
        Node("vps1", "vps", os_type="ubuntu", os_version="22.04", arch="x86_64"),
        Node("vps2", "vps", os_type="centos", os_version="9", arch="x86_64"),
        Node("vps3", "vps", os_type="centos", os_version="9", arch="x86_64"),
    ]
    smithi = nodes("smithi", 2, os_type="ubuntu", os_version="22.04", arch="x86_64")
    queue = [
        job(1, 2, "vps", os_type="centos", os_version="9", priority=10),
        job(2, 1, "vps", os_type="rhel"),
        job(3, 2, "smithi", os_type="centos", os_version="9"),
        job(4, 1, "smithi", arch="aarch64"),
        job(5, 1, "vps", os_type="centos", priority=20),
    ]
    plan = solve_checked(snapshot(vps + smithi, queue), PLAIN)
    assert started(plan) == {"1": ("vps2", "vps3"), "3": ("smithi001", "smithi002")}
    got = reasons(plan)
    assert got["2"] == WaitReason.INVALID  # no rhel vps and vps is not reimaged
    assert got["4"] == WaitReason.INVALID  # reimaging does not change the arch
    assert got["5"] == WaitReason.LOWER_PRIORITY  # the only free vps is ubuntu


def test_several_pools_in_one_type() -> None:
    vps = [Node(f"u{k}", "vps", os_type="ubuntu") for k in range(2)]
    vps += [Node(f"c{k}", "vps", os_type="centos") for k in range(2)]
    queue = [
        job(1, 3, "vps", priority=10),
        job(2, 2, "vps", os_type="centos", priority=20),
        job(3, 1, "vps", os_type="ubuntu", priority=30),
    ]
    plan = solve_checked(snapshot(vps, queue), PLAIN)
    # 1 (3 nodes of any OS) + 3 (1 ubuntu) beats 2 + 3 by weight: 1 must span both pools.
    assert set(started(plan)) == {"1", "3"}
    assert len(set(started(plan)["1"]) & {"c0", "c1"}) == 2


def test_owner_cap_applies_only_while_others_wait() -> None:
    policy = with_(PLAIN, fairness={"owner_max_share": 0.3})
    alice = [job(k, 1, owner="alice", priority=10) for k in range(6)]
    plan = solve_checked(
        snapshot(nodes("smithi", 10), [*alice, job(9, 1, owner="bob", priority=500)]), policy
    )
    assert sum(1 for s in plan.starts if s.job_id != "9") == 3  # ceil(0.3 x 10)
    assert "9" in started(plan)
    assert reasons(plan)["5"] == WaitReason.OWNER_OVER_SHARE
    # Nobody else waits: no cap.
    plan = solve_checked(snapshot(nodes("smithi", 10), alice), policy)
    assert len(plan.starts) == 6


def test_owner_cap_counts_running_jobs_and_allows_largest_job() -> None:
    policy = with_(PLAIN, fairness={"owner_max_share": 0.2})
    lab = nodes("smithi", 10)
    running = (RunningJob(job("r", 1, owner="alice"), ("smithi010",), T0),)
    queue = [
        job(1, 4, owner="alice", priority=1),
        job(2, 1, owner="alice", priority=2),
        job(3, 1, owner="bob", priority=900),
    ]
    plan = solve_checked(snapshot(lab, queue, running=running), policy)
    # cap = max(ceil(0.2 x 10), largest job 4) = 4; alice runs 1 already, so the 4-node job waits
    assert reasons(plan)["1"] == WaitReason.OWNER_OVER_SHARE
    assert {"2", "3"} <= set(started(plan))


def test_run_cap() -> None:
    policy = with_(PLAIN, fairness={"run_max_share": 0.25})
    queue = [job(k, 1, run="big", owner=f"o{k}", priority=10) for k in range(6)]
    queue.append(job(9, 1, run="small", priority=900))
    plan = solve_checked(snapshot(nodes("smithi", 8), queue), policy)
    assert sum(1 for s in plan.starts if s.job_id != "9") == 2  # ceil(0.25 x 8)
    assert list(reasons(plan).values()) == [WaitReason.RUN_OVER_SHARE] * 4
    plan = solve_checked(snapshot(nodes("smithi", 8), queue[:-1]), policy)
    assert len(plan.starts) == 6


def test_aging_lets_old_low_priority_job_overtake() -> None:
    aging = with_(PLAIN, aging={"enabled": True, "rate_per_hour": 1.0, "max_boost": 250.0})
    queue = [job("fresh", 1, priority=100), job("old", 1, priority=300, waited_h=240)]
    assert set(started(solve_checked(snapshot(nodes("smithi", 1), queue), aging))) == {"old"}
    assert set(started(solve_checked(snapshot(nodes("smithi", 1), queue), PLAIN))) == {"fresh"}
    # The cap: 250 points at most, so a 400 stays behind a 100 forever without reservations.
    queue = [job("fresh", 1, priority=100), job("old", 1, priority=400, waited_h=10_000)]
    assert set(started(solve_checked(snapshot(nodes("smithi", 1), queue), aging))) == {"fresh"}


def test_reservation_holds_nodes_for_starved_big_job() -> None:
    policy = with_(PLAIN, reservations={"enabled": True, "after_hours": 24, "max_jobs": 2})
    lab = nodes("smithi", 4)
    running = (RunningJob(job("r", 2), ("smithi003", "smithi004"), T0),)
    queue = [job("big", 4, priority=1000, waited_h=30), job("urgent", 1, priority=10)]
    plan = solve_checked(snapshot(lab, queue, running=running), policy)
    assert plan.starts == ()
    assert {(h.node, h.for_job_id) for h in plan.held} == {
        ("smithi001", "big"),
        ("smithi002", "big"),
    }
    waits = {w.job_id: w for w in plan.waiting}
    assert waits["urgent"].reason == WaitReason.HELD_FOR_JOB
    assert "2 held for job(s) big" in waits["urgent"].detail
    assert waits["big"].position == 1
    # Not yet starved, or reservations off: the urgent job takes a node.
    young = [job("big", 4, priority=1000, waited_h=20), job("urgent", 1, priority=10)]
    assert set(started(solve_checked(snapshot(lab, young, running=running), policy))) == {"urgent"}
    assert set(started(solve_checked(snapshot(lab, queue, running=running), PLAIN))) == {"urgent"}
    # Enough nodes: the reserved job starts at once, ahead of urgent work.
    plan = solve_checked(snapshot(nodes("smithi", 4), queue), policy)
    assert set(started(plan)) == {"big"} and plan.held == ()
    # Nothing is held then: the urgent job lost to a starved job, not to a hold.
    urgent = {w.job_id: w for w in plan.waiting}["urgent"]
    assert urgent.reason == WaitReason.LOWER_PRIORITY
    assert "4 given to starved job(s) big" in urgent.detail


def test_head_of_queue_reservation() -> None:
    policy = with_(
        PLAIN, reservations={"enabled": True, "after_hours": 1000, "head_of_queue": True}
    )
    queue = [job("head", 3, priority=1), job("small", 1, priority=500)]
    lab = [*nodes("smithi", 2), Node("smithi003", "smithi", locked=True, locked_by="dan")]
    plan = solve_checked(snapshot(lab, queue), policy)
    assert plan.starts == () and len(plan.held) == 2
    assert set(started(solve_checked(snapshot(lab, queue), PLAIN))) == {"small"}


def test_head_of_queue_is_the_best_ranked_member_of_its_profile() -> None:
    """Two jobs of one profile (same owner, run, nodes, priority) rank by their learned
    runtime estimates: the younger, shorter one is the head, and the validator agrees.
    (It used to take each profile's oldest job as its head and reject every such plan.)"""
    policy = with_(
        PLAIN,
        weights={"runtime_exponent": 1.0},
        reservations={"enabled": True, "after_hours": 1000, "head_of_queue": True},
    )
    queue = [
        job("old-long", 3, waited_h=2.0, description="long-test"),
        job("new-short", 3, waited_h=1.0, description="short-test"),
        job("filler", 1, priority=500),
    ]
    lab = [*nodes("smithi", 2), Node("smithi003", "smithi", locked=True, locked_by="dan")]
    learned = {"long-test": 20000.0, "short-test": 600.0}
    plan = solve_checked(snapshot(lab, queue, runtime_estimates=learned), policy)
    assert plan.starts == ()
    assert [h.for_job_id for h in plan.held] == ["new-short", "new-short"]


def test_last_in_suite_waits_for_its_run() -> None:
    queue = [job("last", 0, run="r1", last_in_suite=True), job("work", 1, run="r1")]
    plan = solve_checked(snapshot([], queue), PLAIN)
    assert reasons(plan)["last"] == WaitReason.WAITING_FOR_RUN
    running = (RunningJob(job("w", 1, run="r1"), ("smithi001",), T0),)
    plan = solve_checked(snapshot(nodes("smithi", 1), queue[:1], running=running), PLAIN)
    assert reasons(plan)["last"] == WaitReason.WAITING_FOR_RUN
    plan = solve_checked(snapshot([], queue[:1]), PLAIN)
    assert started(plan) == {"last": ()}


def test_paused_tube() -> None:
    queue = [job(1, 1, "smithi"), job(2, 1, "smithi,mira")]
    plan = solve_checked(
        snapshot(nodes("smithi", 2), queue, paused_tubes=frozenset({"smithi"})), PLAIN
    )
    assert set(started(plan)) == {"2"}
    assert reasons(plan)["1"] == WaitReason.TUBE_PAUSED
    plan = solve_checked(snapshot(nodes("smithi", 2), queue), PLAIN)
    assert len(plan.starts) == 2


def test_down_and_people_locked_nodes_are_never_given() -> None:
    lab = [
        Node("smithi001", "smithi", up=False),
        Node("smithi002", "smithi", locked=True, locked_by="alice@home"),
        Node("smithi003", "smithi"),
    ]
    running = (RunningJob(job("r", 1), ("smithi003",), T0),)
    plan = solve_checked(snapshot(lab, [job(1, 1)], running=running), PLAIN)
    assert plan.starts == () and plan.waiting[0].reason == WaitReason.NOT_ENOUGH_NODES
    plan = solve_checked(snapshot(lab, [job(1, 1)]), PLAIN)
    assert started(plan) == {"1": ("smithi003",)}


def test_empty_inputs_are_normal_results() -> None:
    plan = solve(snapshot([], []), PLAIN)
    assert plan.starts == () and plan.waiting == () and plan.solver.objective == 0
    plan = solve_checked(snapshot([], [job(1, 2)]), PLAIN)
    assert plan.waiting[0].reason == WaitReason.INVALID


@pytest.mark.parametrize("workers", [1, 2])
def test_deterministic(workers: int) -> None:
    from solver_support import sepia_snapshot

    policy = policy_from_mapping({"solver": {"num_workers": workers}, "reimaged_types": ["smithi"]})
    snap = sepia_snapshot(1, seed=3, busy_fraction=0.3)
    first, second = solve(snap, policy), solve(snap, policy)
    assert first.solver.objective == second.solver.objective
    if workers == 1:  # several workers may pick another plan of the same objective
        assert first.starts == second.starts and first.held == second.held
        assert first.waiting == second.waiting


def test_optimum_beats_greedy_by_weight() -> None:
    """Two 1-node jobs at priority 15 (66.7 each) beat one 2-node job at priority 10 (100)."""
    queue = [job("A", 2, priority=10), job("B", 1, priority=15), job("C", 1, priority=15)]
    plan = solve_checked(snapshot(nodes("smithi", 2), queue), PLAIN)
    assert set(started(plan)) == {"B", "C"}
    assert plan.solver.status == "OPTIMAL" and plan.solver.gap == 0.0
    assert reasons(plan)["A"] == WaitReason.LOWER_PRIORITY


def test_job_without_machine_type_is_invalid_not_a_crash() -> None:
    plan = solve_checked(snapshot(nodes("smithi", 1), [job(1, 1, ())]), PLAIN)
    assert plan.waiting[0].reason == WaitReason.INVALID
    assert plan.waiting[0].detail == "lists no machine type"


def test_tiny_time_limit_still_gives_a_valid_plan() -> None:
    """At the time limit the best plan found is returned (OPTIMAL or FEASIBLE), never an error."""
    from solver_support import sepia_snapshot

    policy = policy_from_mapping(
        {
            "solver": {"time_limit_s": 0.01},
            "fairness": {"owner_max_share": 0.3, "run_max_share": 0.2},
            "reimaged_types": ["smithi", "mira", "gibba", "trial"],
        }
    )
    snap = sepia_snapshot(1, seed=5, busy_fraction=0.2)
    plan = solve_checked(snap, policy)
    assert plan.solver.status in ("OPTIMAL", "FEASIBLE")
    assert plan.solver.bound >= plan.solver.objective > 0


def test_usage_penalty_favours_light_users() -> None:
    policy = with_(PLAIN, fairness={"usage_penalty": 2.0})
    queue = [job("heavy", 1, owner="alice"), job("light", 1, owner="bob")]
    usage = {"alice": 9_000.0, "bob": 1_000.0}
    plan = solve_checked(snapshot(nodes("smithi", 1), queue, usage=usage), policy)
    assert set(started(plan)) == {"light"}
    plan = solve_checked(snapshot(nodes("smithi", 1), queue, usage={"bob": 5.0}), policy)
    assert set(started(plan)) == {"heavy"}  # now bob is the only user with history


def test_positions_follow_dispatch_order() -> None:
    policy = with_(PLAIN, reservations={"enabled": True, "after_hours": 24, "max_jobs": 1})
    lab = [*nodes("smithi", 1), Node("smithi002", "smithi", locked=True, locked_by="x")]
    queue = [
        job("low", 1, priority=500),
        job("old-big", 2, priority=900, waited_h=48),
        job("urgent-2", 2, priority=10),
        job("urgent-1", 1, priority=10, waited_h=1),
        job("urgent-1b", 1, priority=10),
    ]
    plan = solve_checked(snapshot(lab, queue), policy)
    assert plan.starts == ()  # the only free node is held for the starved 2-node job
    order = [w.job_id for w in sorted(plan.waiting, key=lambda w: w.position)]
    # reserved first; then priority, fewer nodes, older, id
    assert order == ["old-big", "urgent-1", "urgent-1b", "urgent-2", "low"]
