"""The what-if tuning rules: priority-scaled reservations, peer-only caps, per-node weights
and EASY backfill with runtime estimates. Each rule: what the solver does with it, what
it does without, and that the independent validator rejects a plan breaking it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solver_support import T0, job, nodes

from optialloc.check.validator import validate_plan
from optialloc.domain import Plan, RunningJob, Snapshot, Start, Waiting
from optialloc.errors import PolicyError
from optialloc.policy import Policy, policy_from_mapping
from optialloc.ranking import reservation_order_s, reservation_threshold_s, runtime_estimate_s
from optialloc.solver import solve

NO_CAPS = {"owner_max_share": 1.0, "run_max_share": 1.0}


def policy(**sections: Any) -> Policy:
    data: dict[str, Any] = {"aging": {"enabled": False}, "fairness": dict(NO_CAPS)}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return policy_from_mapping(data)


def busy(count: int, started_h_ago: float = 1.0, estimate_s: float | None = None) -> tuple:
    """`count` smithi nodes (smithi001..) used by one-node running jobs."""
    body = {} if estimate_s is None else {"runtime_estimate_s": estimate_s}
    return tuple(
        RunningJob(
            job(f"r{k}", 1, owner="ops", run="old", body=body),
            (f"smithi{k:03d}",),
            T0 - timedelta(hours=started_h_ago),
        )
        for k in range(1, count + 1)
    )


def holds_of(plan: Plan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for hold in plan.held:
        out.setdefault(hold.for_job_id, []).append(hold.node)
    return out


# ----------------------------------------------------------------------- priority-scaled


def test_threshold_scales_with_priority_and_has_a_floor() -> None:
    scaled = policy(reservations={"after_hours": 24.0, "priority_scaled": True})
    assert reservation_threshold_s(100, scaled) == pytest.approx(2.4 * 3600)
    assert reservation_threshold_s(1000, scaled) == pytest.approx(24 * 3600)
    assert reservation_threshold_s(10, scaled) == pytest.approx(1.0 * 3600)  # min_after_hours
    assert reservation_threshold_s(100, policy()) == pytest.approx(24 * 3600)
    # priority_exponent > 1: a nightly's threshold stays, urgent work starves sooner
    steeper = policy(
        reservations={"after_hours": 36.0, "priority_scaled": True, "priority_exponent": 1.2}
    )
    assert reservation_threshold_s(1000, steeper) == pytest.approx(36 * 3600)
    assert reservation_threshold_s(100, steeper) == pytest.approx(36 * 0.1**1.2 * 3600)
    assert reservation_threshold_s(100, steeper) < 2.4 * 3600
    lab = nodes("smithi", 4)
    pr = job("pr", 4, priority=100, waited_h=2.3)  # past 2.27 h, short of 3.6 h
    snap = Snapshot(T0, tuple(lab), (pr,), busy(3))
    assert set(holds_of(solve(snap, steeper))) == {"pr"}
    linear = policy(reservations={"after_hours": 36.0, "priority_scaled": True})
    assert holds_of(solve(snap, linear)) == {}
    assert validate_plan(snap, steeper, solve(snap, steeper)) == []
    assert any("has no reservation" in v for v in validate_plan(snap, linear, solve(snap, steeper)))


def test_a_pr_job_is_reserved_after_hours_a_nightly_after_a_day() -> None:
    lab = nodes("smithi", 4)
    queue = [
        job("pr", 4, priority=100, waited_h=3.0),
        job("nightly", 4, priority=1000, waited_h=3.0, owner="bob", run="n"),
    ]
    snap = Snapshot(T0, tuple(lab), tuple(queue), busy(3))
    scaled = policy(reservations={"after_hours": 24.0, "priority_scaled": True})
    plan = solve(snap, scaled)
    assert holds_of(plan) == {"pr": ["smithi004"]}
    assert validate_plan(snap, scaled, plan) == []
    # By age alone nobody has waited 24 h: no hold, and the validator says so.
    by_age = policy(reservations={"after_hours": 24.0})
    assert solve(snap, by_age).held == ()
    assert any("has no reservation" in v for v in validate_plan(snap, by_age, plan))


def test_reservations_go_to_the_longest_starved_job_first() -> None:
    # starved since: the nightly 30 h - 24 h = 6 h ago, the PR job 10 h - 2.4 h = 7.6 h ago
    lab = nodes("smithi", 4)
    queue = [
        job("nightly", 4, priority=1000, waited_h=30.0, owner="bob", run="n"),
        job("pr", 4, priority=100, waited_h=10.0),
    ]
    snap = Snapshot(T0, tuple(lab), tuple(queue), busy(3))
    scaled = policy(reservations={"after_hours": 24.0, "priority_scaled": True, "max_jobs": 1})
    assert set(holds_of(solve(snap, scaled))) == {"pr"}
    # A job starved for longer goes first whatever its priority: the order is stable.
    older = Snapshot(
        T0, tuple(lab), (replace(queue[0], queued_at=T0 - timedelta(hours=40)), queue[1]), busy(3)
    )
    assert set(holds_of(solve(older, scaled))) == {"nightly"}
    by_age = policy(reservations={"after_hours": 2.0, "max_jobs": 1})
    plan = solve(snap, by_age)
    assert set(holds_of(plan)) == {"nightly"}
    assert any("has no reservation" in v for v in validate_plan(snap, scaled, plan))


def test_order_hours_puts_starved_urgent_jobs_before_starved_nightlies() -> None:
    # Starved since: the nightly 30 h - 24 h = 6 h ago, the PR job 10 h - 2.4 h = 7.6 h ago
    # ... but the nightly queued 40 h ago starved 16 h ago and goes first by default.
    lab = nodes("smithi", 4)
    nightly = job("nightly", 4, priority=1000, waited_h=40.0, owner="bob", run="n")
    pr = job("pr", 4, priority=100, waited_h=10.0)
    snap = Snapshot(T0, tuple(lab), (nightly, pr), busy(3))
    rules = {"after_hours": 24.0, "priority_scaled": True, "max_jobs": 1}
    by_starved_since = policy(reservations=rules)
    assert set(holds_of(solve(snap, by_starved_since))) == {"nightly"}
    # Ranked by queued_at + 48 h x priority / 1000: the nightly at -40 + 48 = +8 h,
    # the PR job at -10 + 4.8 = -5.2 h: the PR job first.
    ranked = policy(reservations={**rules, "order_hours": 48.0})
    assert reservation_order_s(1000, ranked) == pytest.approx(48 * 3600)
    assert reservation_order_s(100, ranked) == pytest.approx(4.8 * 3600)
    assert reservation_order_s(10, ranked) == pytest.approx(3600)  # never before starving
    plan = solve(snap, ranked)
    assert set(holds_of(plan)) == {"pr"}
    assert validate_plan(snap, ranked, plan) == []
    assert any("has no reservation" in v for v in validate_plan(snap, by_starved_since, plan))
    # A nightly ranked before the PR job (queued 55 h ago: -55 + 48 = -7 h) keeps its place.
    older = Snapshot(
        T0, tuple(lab), (replace(nightly, queued_at=T0 - timedelta(hours=55)), pr), busy(3)
    )
    assert set(holds_of(solve(older, ranked))) == {"nightly"}


def test_one_profile_fills_every_reservation_slot() -> None:
    # Fewer look-alike groups than reservation slots: the solver and the validator
    # both read past the first member of each (a regression: a shortcut that bounds
    # the search by the k-th group's oldest job must not apply with fewer groups).
    lab = nodes("smithi", 20)
    queue = [
        job(f"n{k}", 2, priority=1000, waited_h=30.0 - 0.01 * k, owner="bob", run="n")
        for k in range(6)
    ]
    snap = Snapshot(T0, tuple(lab), tuple(queue), busy(19))
    scaled = policy(reservations={"after_hours": 24.0, "priority_scaled": True, "max_jobs": 3})
    plan = solve(snap, scaled)
    assert sorted(holds_of(plan)) == ["n0"]  # one free node: held for the longest starved
    assert validate_plan(snap, scaled, plan) == []
    # Free every node, with a rival owner waiting: the three longest starved start as
    # reserved jobs, exempt from bob's cap (2 nodes); the other three wait for it.
    rival = job("c1", 1, priority=1000, owner="carol", run="c")
    free = Snapshot(T0, tuple(lab), (*queue, rival), ())
    capped_scaled = policy(
        reservations={"after_hours": 24.0, "priority_scaled": True, "max_jobs": 3},
        fairness={"owner_max_share": 0.1, "run_max_share": 1.0},
    )
    plan = solve(free, capped_scaled)
    assert {s.job_id for s in plan.starts} == {"n0", "n1", "n2", "c1"}
    assert validate_plan(free, capped_scaled, plan) == []


# ----------------------------------------------------------------------- peers-only caps


def capped(peers_only: bool) -> Policy:
    return policy(fairness={"owner_max_share": 0.5, "peers_only": peers_only})


def test_a_nightly_backlog_does_not_cap_an_urgent_owner() -> None:
    lab = nodes("smithi", 10)
    queue = [job(f"a{k}", priority=50, owner="alice", run="pr") for k in range(8)]
    queue += [job(f"b{k}", priority=1000, owner="bob", run="n") for k in range(5)]
    snap = Snapshot(T0, tuple(lab), tuple(queue))
    peers = solve(snap, capped(True))
    assert sum(s.job_id.startswith("a") for s in peers.starts) == 8
    assert validate_plan(snap, capped(True), peers) == []
    plain = solve(snap, capped(False))
    assert sum(s.job_id.startswith("a") for s in plain.starts) == 5
    violations = validate_plan(snap, capped(False), peers)
    assert any("owner alice: holds 8 smithi" in v for v in violations)


def test_an_equally_urgent_owner_still_caps() -> None:
    lab = nodes("smithi", 10)
    queue = [job(f"a{k}", priority=50, owner="alice", run="pr") for k in range(8)]
    queue += [job(f"b{k}", priority=50, owner="bob", run="n") for k in range(2)]
    queue += [job(f"c{k}", priority=1000, owner="carol", run="m") for k in range(5)]
    snap = Snapshot(T0, tuple(lab), tuple(queue))
    plan = solve(snap, capped(True))
    assert sum(s.job_id.startswith("a") for s in plan.starts) == 5
    assert validate_plan(snap, capped(True), plan) == []
    # A plan giving alice 8 nodes breaks the cap bob's equal priority imposes.
    greedy = [Start(f"a{k}", (f"smithi{k + 1:03d}",)) for k in range(8)]
    greedy += [Start(f"b{k}", (f"smithi{k + 9:03d}",)) for k in range(2)]
    waiting = tuple(w for w in plan.waiting if w.job_id.startswith("c"))
    bad = Plan(T0, tuple(greedy), (), waiting, plan.solver)
    assert any("owner alice: holds 8" in v for v in validate_plan(snap, capped(True), bad))


def test_work_conserving_caps_ignore_rivals_at_their_own_cap() -> None:
    """Two PR runs, each already at its 30 % cap of 10 nodes, both with more jobs; 4 nodes
    free and a nightly backlog. Plain caps hold both runs back and give the 4 nodes to
    nightlies; work-conserving caps give them to the PR runs (neither rival can use them)."""
    lab = nodes("smithi", 10)
    running = tuple(
        RunningJob(job(f"r{run}{k}", owner=run, run=run), (f"smithi{3 * i + k + 1:03d}",), T0)
        for i, run in enumerate(("pr1", "pr2"))
        for k in range(3)
    )
    queue = [
        job(f"{run}-{k}", priority=100, owner=run, run=run)
        for run in ("pr1", "pr2")
        for k in range(3)
    ]
    queue += [job(f"n{k}", priority=1000, owner="nightly", run=f"n{k}") for k in range(6)]
    snap = Snapshot(T0, tuple(lab), tuple(queue), running)
    shares = {"run_max_share": 0.3, "peers_only": True}
    plain = policy(fairness=shares)
    conserving = policy(fairness={**shares, "work_conserving": True})
    plan = solve(snap, plain)
    assert sorted(s.job_id[0] for s in plan.starts) == ["n"] * 4
    assert validate_plan(snap, plain, plan) == []
    wc = solve(snap, conserving)
    assert sorted(s.job_id[:2] for s in wc.starts) == ["pr"] * 4
    assert validate_plan(snap, conserving, wc) == []
    # Plain caps refuse the work-conserving plan, which is worth 10x as much.
    assert any("cap is 3" in v for v in validate_plan(snap, plain, wc))
    assert wc.solver.objective > 9 * plan.solver.objective
    # A rival below its cap still caps: with pr2 running only 2 jobs, pr1 gets no more.
    fewer = Snapshot(T0, tuple(lab), tuple(queue), running[:5])
    plan = solve(fewer, conserving)
    assert validate_plan(fewer, conserving, plan) == []
    assert not any(s.job_id.startswith("pr1") for s in plan.starts)


# ----------------------------------------------------------------------- per-node weights


def test_node_exponent_lets_an_urgent_big_job_outbid_small_ones() -> None:
    lab = nodes("smithi", 4)
    queue = [job("big", 4, priority=50)] + [job(f"s{k}", 1, priority=100) for k in range(4)]
    snap = Snapshot(T0, tuple(lab), tuple(queue))
    per_job = policy()
    per_node = policy(weights={"node_exponent": 1.0})
    assert {s.job_id for s in solve(snap, per_job).starts} == {"s0", "s1", "s2", "s3"}
    plan = solve(snap, per_node)
    assert [s.job_id for s in plan.starts] == ["big"]
    assert plan.solver.objective == pytest.approx(80.0 * (1 + 0.01 / 4))
    assert validate_plan(snap, per_node, plan) == []
    assert any("objective" in v for v in validate_plan(snap, per_job, plan))


# ----------------------------------------------------------------------- backfill


def backfill_case() -> Snapshot:
    """4 smithi, 3 busy until T0 + 1 h by their estimates; a starved 4-node job holds the
    4th; a 30-min, a 2-h and an estimate-less 1-node job wait."""
    queue = [
        job("big", 4, priority=1000, waited_h=30.0, owner="bob", run="n"),
        job("short", 1, body={"runtime_estimate_s": 1800}),
        job("long", 1, body={"runtime_estimate_s": 7200}),
        job("unknown", 1),
    ]
    return Snapshot(T0, tuple(nodes("smithi", 4)), tuple(queue), busy(3, 1.0, 7200))


def test_a_short_job_backfills_held_nodes() -> None:
    snap = backfill_case()
    on = policy(reservations={"backfill": True})
    plan = solve(snap, on)
    assert [(s.job_id, s.nodes) for s in plan.starts] == [("short", ("smithi004",))]
    assert plan.held == ()
    assert validate_plan(snap, on, plan) == []
    off = policy()
    plain = solve(snap, off)
    assert plain.starts == () and holds_of(plain) == {"big": ["smithi004"]}
    assert any("went to job short" in v for v in validate_plan(snap, off, plan))


def test_a_job_ending_after_the_shadow_time_may_not_backfill() -> None:
    snap = backfill_case()
    on = policy(reservations={"backfill": True})
    plan = solve(snap, on)
    waiting = tuple(
        Waiting("short", w.position, w.reason) if w.job_id == "long" else w for w in plan.waiting
    )
    bad = replace(plan, starts=(Start("long", ("smithi004",)),), waiting=waiting)
    assert any("went to job long" in v for v in validate_plan(snap, on, bad))
    unknown = tuple(
        Waiting("short", w.position, w.reason) if w.job_id == "unknown" else w for w in plan.waiting
    )
    bad = replace(plan, starts=(Start("unknown", ("smithi004",)),), waiting=unknown)
    assert any("went to job unknown" in v for v in validate_plan(snap, on, bad))


def test_a_running_job_past_its_estimate_counts_until_max_job_time() -> None:
    # 3 h into a 2 h estimate: only started_at + max_job_time (T0 + 20 min) is sure,
    # so the 30-min job no longer ends before the reservation's shadow time.
    snap = backfill_case()
    overrun = replace(snap, running=busy(3, 3.0, 7200))
    on = policy(reservations={"backfill": True}, max_job_time_s=3 * 3600 + 1200)
    plan = solve(overrun, on)
    assert plan.starts == () and holds_of(plan) == {"big": ["smithi004"]}
    assert validate_plan(overrun, on, plan) == []


def test_bad_estimates_are_ignored_and_bad_knobs_rejected() -> None:
    assert runtime_estimate_s(job("x", body={"runtime_estimate_s": "1h"})) is None
    assert runtime_estimate_s(job("x", body={"runtime_estimate_s": -5})) is None
    assert runtime_estimate_s(job("x", body={"runtime_estimate_s": True})) is None
    assert runtime_estimate_s(job("x", body={"runtime_estimate_s": 60})) == 60.0
    with pytest.raises(PolicyError) as err:
        policy_from_mapping({"reservations": {"backfill": "yes"}})
    assert err.value.field == "reservations.backfill"
    with pytest.raises(PolicyError) as err:
        policy_from_mapping({"weights": {"node_exponent": 2}})
    assert err.value.field == "weights.node_exponent"


# ----------------------------------------------------------------------- property: backfill


@st.composite
def backfill_labs(draw: st.DrawFn) -> tuple[Snapshot, Policy]:
    """One or two types, most nodes busy with estimated jobs, starved big jobs, short jobs."""
    lab = nodes("smithi", draw(st.integers(2, 8))) + nodes("mira", draw(st.integers(0, 3)))
    running = []
    for k, node in enumerate(lab):
        if draw(st.booleans()) or k % 3:
            est = draw(st.sampled_from((None, 1800.0, 3600.0, 7200.0)))
            body = {} if est is None else {"runtime_estimate_s": est}
            rj = job(f"r{k}", 1, node.machine_type, owner="ops", run="old", body=body)
            ago = timedelta(minutes=draw(st.sampled_from((0, 20, 50, 130))))
            running.append(RunningJob(rj, (node.name,), T0 - ago))
    queue = []
    for k in range(draw(st.integers(1, 8))):
        est = draw(st.sampled_from((None, 300.0, 1200.0, 3000.0, 9000.0)))
        queue.append(
            job(
                f"j{k}",
                draw(st.integers(1, 4)),
                draw(st.sampled_from(("smithi", "mira", "smithi,mira"))),
                priority=draw(st.sampled_from((50, 100, 1000))),
                owner=draw(st.sampled_from(("alice", "bob"))),
                run=draw(st.sampled_from(("r1", "r2"))),
                waited_h=draw(st.sampled_from((0.0, 3.0, 30.0))),
                body={} if est is None else {"runtime_estimate_s": est},
            )
        )
    pol = policy_from_mapping(
        {
            "reservations": {
                "after_hours": 24.0,
                "priority_scaled": draw(st.booleans()),
                "max_jobs": draw(st.integers(1, 3)),
                "backfill": True,
            },
            "fairness": {
                "owner_max_share": draw(st.sampled_from((1.0, 0.5))),
                "run_max_share": 1.0,
                "peers_only": draw(st.booleans()),
                "work_conserving": draw(st.booleans()),
            },
            "reimaged_types": ["smithi", "mira"],
        }
    )
    return Snapshot(T0, tuple(lab), tuple(queue), tuple(running)), pol


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(backfill_labs())
def test_every_backfilled_plan_validates(case: tuple[Snapshot, Policy]) -> None:
    snap, pol = case
    plan = solve(snap, pol)
    assert validate_plan(snap, pol, plan) == []
    # a job never both starts and has nodes held for it
    held_for = {h.for_job_id for h in plan.held}
    assert not held_for & {s.job_id for s in plan.starts}
