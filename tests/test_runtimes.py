"""Runtime estimates: learned per description (`optialloc.dispatch.runtimes`), carried by the
snapshot, weighed by the policy (`weights.runtime_exponent`), checked by the validator,
and learned by the real dispatcher from the jobs it runs (in the simulator)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from solver_support import T0, job, nodes

from optialloc.check.validator import validate_plan
from optialloc.dispatch.runtimes import MIN_RUNTIME_S, RuntimeHistory
from optialloc.domain import RunningJob, Snapshot
from optialloc.errors import BackendUnavailable, PolicyError
from optialloc.policy import policy_from_mapping
from optialloc.ranking import estimate_bucket, runtime_estimate_s, runtime_factor, weight_bucket
from optialloc.sim.engine import simulate
from optialloc.sim.generate import WeekParams, generate
from optialloc.sim.optialloc_sched import OptiallocScheduler
from optialloc.sim.scenario import lab_nodes
from optialloc.snapshots.io import snapshot_from_mapping, snapshot_to_mapping
from optialloc.solver import solve
from tests.conftest import FIXTURES

DESC_A = "rados/thrash/{clusters/fixed-1 tasks/radosbench}"
DESC_B = "rados/thrash/{clusters/fixed-1 tasks/snaps-few-objects}"


def runtime_policy(**weights: Any) -> Any:
    return policy_from_mapping(
        {
            "aging": {"enabled": False},
            "reservations": {"enabled": False},
            "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0},
            "weights": {"runtime_exponent": 1.0, "runtime_reference_s": 3600.0, **weights},
        }
    )


# ----------------------------------------------------------------------- the history


def test_history_learns_a_geometric_mean_then_a_moving_one(tmp_path: Path) -> None:
    history = RuntimeHistory(tmp_path / "runtimes.sqlite")
    first = job(1, description=DESC_A)
    assert history.observe(first, 1000.0, T0) == pytest.approx(1000.0)
    assert history.observe(first, 4000.0, T0) == pytest.approx(2000.0)  # sqrt(1000 x 4000)
    for _ in range(20):
        history.observe(first, 8000.0, T0)
    assert history.estimates()[DESC_A] == pytest.approx(8000.0, rel=0.02)  # recent runs win
    assert history.runs(DESC_A) == 22
    # Nothing to learn from: no description, a run too short to mean anything.
    assert history.observe(job(2), 500.0, T0) is None
    assert history.observe(job(3, description=DESC_B), MIN_RUNTIME_S / 2, T0) is None
    assert DESC_B not in history.estimates()


def test_history_survives_a_restart_and_snapshots_keep_their_copy(tmp_path: Path) -> None:
    path = tmp_path / "state" / "runtimes.sqlite"
    history = RuntimeHistory(path)
    history.observe(job(1, description=DESC_A), 600.0, T0)
    seen = history.estimates()
    history.observe(job(2, description=DESC_B), 60.0, T0)
    assert DESC_B not in seen  # a snapshot's mapping never changes under it
    history.close()
    again = RuntimeHistory(path)
    assert again.estimates() == pytest.approx({DESC_A: 600.0, DESC_B: 60.0})
    assert again.runs(DESC_A) == 1


def test_history_on_an_unusable_path_says_what_to_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BackendUnavailable, match="state_dir"):
        RuntimeHistory(blocker / "runtimes.sqlite")


def test_history_keeps_going_when_its_file_breaks(tmp_path: Path) -> None:
    history = RuntimeHistory(tmp_path / "runtimes.sqlite")
    history._db.close()  # the disk went away under it
    # advice only: the estimate is kept in memory and the dispatcher goes on
    assert history.observe(job(1, description=DESC_A), 700.0, T0) == pytest.approx(700.0)
    assert history.estimates() == pytest.approx({DESC_A: 700.0})


# ----------------------------------------------------------------------- policy


def test_estimates_come_from_the_body_first_then_from_history() -> None:
    from_body = job(1, description=DESC_A, body={"runtime_estimate_s": 120})
    assert from_body.runtime_estimate_s == 120.0
    learned = {DESC_A: 900.0}
    assert runtime_estimate_s(from_body, learned) == 120.0
    assert runtime_estimate_s(job(2, description=DESC_A), learned) == 900.0
    assert runtime_estimate_s(job(3, description=DESC_B), learned) is None
    assert job(4, body={"runtime_estimate_s": -5}).runtime_estimate_s is None
    assert job(5, body={"runtime_estimate_s": True}).runtime_estimate_s is None


def test_runtime_factor_is_bucketed_and_clamped() -> None:
    policy = runtime_policy(runtime_max_factor=4.0)
    assert runtime_factor(None, policy) == 1.0
    assert runtime_factor(3600.0, policy) == pytest.approx(1.0)
    assert runtime_factor(2400.0, policy) == pytest.approx(1.0)  # same bucket (4096 s)
    assert runtime_factor(900.0, policy) == pytest.approx(4.0)  # bucket 1024 s
    assert runtime_factor(60.0, policy) == pytest.approx(4.0)  # clamped
    assert runtime_factor(10 * 3600.0, policy) == pytest.approx(0.25)  # clamped
    assert estimate_bucket(1000.0) == estimate_bucket(1100.0) == 1024.0
    assert math.log(estimate_bucket(5000.0), 4) == pytest.approx(6.0)
    half = runtime_policy(runtime_max_factor=8.0, runtime_exponent=0.5)
    assert runtime_factor(900.0, half) == pytest.approx(2.0)  # (4096 / 1024) ** 0.5
    # buckets merge where the factor is clamped anyway: same weight, fewer classes
    assert weight_bucket(60.0, policy) == weight_bucket(600.0, policy) == 1024.0
    assert runtime_factor(60.0, policy) == runtime_factor(weight_bucket(60.0, policy), policy)
    assert weight_bucket(10 * 3600.0, policy) == 16384.0
    off = policy_from_mapping({})
    assert runtime_factor(60.0, off) == 1.0
    with pytest.raises(PolicyError, match=r"weights\.runtime_exponent"):
        policy_from_mapping({"weights": {"runtime_exponent": 5}})


def test_powers_of_two_buckets_sort_finer_within_the_same_clamp() -> None:
    policy = runtime_policy(runtime_max_factor=4.0, runtime_bucket_base=2)
    assert estimate_bucket(1000.0, 2) == 1024.0 and estimate_bucket(2500.0, 2) == 2048.0
    # five weights instead of three: x4, x2, x1, x1/2, x1/4
    factors = [runtime_factor(s, policy) for s in (600.0, 1800.0, 3600.0, 9000.0, 36000.0)]
    assert factors == pytest.approx([4.0, 2.0, 1.0, 0.5, 0.25])
    base4 = runtime_policy(runtime_max_factor=4.0)
    assert runtime_factor(1800.0, base4) == pytest.approx(4.0)  # 1800 s -> 1024 s in base 4
    # the clamped ends still merge into one bucket each
    assert weight_bucket(60.0, policy) == weight_bucket(900.0, policy) == 1024.0
    assert weight_bucket(20 * 3600.0, policy) == 16384.0
    for seconds in (60.0, 700.0, 1800.0, 5000.0, 9000.0, 20 * 3600.0):
        merged = weight_bucket(seconds, policy)
        assert runtime_factor(merged, policy) == runtime_factor(seconds, policy)
    with pytest.raises(PolicyError, match=r"weights\.runtime_bucket_base"):
        policy_from_mapping({"weights": {"runtime_bucket_base": 8}})


def test_shorter_jobs_first_among_equal_priorities_and_the_validator_checks_it() -> None:
    lab = nodes("smithi", 1)
    queue = [
        job("long", 1, description=DESC_A, waited_h=2.0),
        job("short", 1, description=DESC_B, waited_h=1.0),
    ]
    learned = {DESC_A: 4 * 3600.0, DESC_B: 600.0}
    snap = Snapshot(T0, tuple(lab), tuple(queue), runtime_estimates=learned)
    policy = runtime_policy()
    plan = solve(snap, policy)
    assert [s.job_id for s in plan.starts] == ["short"]
    assert validate_plan(snap, policy, plan) == []
    # Without the estimates the older job goes first; the validator re-weighs the
    # plan with the snapshot's estimates and refuses the objective it reports.
    blind = replace(snap, runtime_estimates={})
    blind_plan = solve(blind, policy)
    assert [s.job_id for s in blind_plan.starts] == ["long"]
    assert any("objective" in v for v in validate_plan(snap, policy, blind_plan))
    # The factor is clamped to [1/F, F]: priorities more than F x F apart never swap.
    nightly = job("nightly", 1, priority=1000, description=DESC_B)
    urgent = job("urgent", 1, priority=100, description=DESC_A)
    snap2 = Snapshot(T0, tuple(lab), (nightly, urgent), runtime_estimates=learned)
    assert [s.job_id for s in solve(snap2, runtime_policy(runtime_max_factor=2.0)).starts] == [
        "urgent"
    ]
    # ... and within F x F they may: a 10-minute nightly before a 4-hour PR job (F = 4).
    assert [s.job_id for s in solve(snap2, policy).starts] == ["nightly"]


def test_snapshot_files_carry_the_estimates() -> None:
    queue = [job("a", 1, description=DESC_A)]
    snap = Snapshot(T0, tuple(nodes("smithi", 1)), tuple(queue), runtime_estimates={DESC_A: 1.5})
    again = snapshot_from_mapping(snapshot_to_mapping(snap))
    assert again.runtime_estimates == {DESC_A: 1.5}
    with pytest.raises(Exception, match="runtime_estimates"):
        snapshot_from_mapping({**snapshot_to_mapping(snap), "runtime_estimates": {DESC_A: 0}})


# ----------------------------------------------------------------------- generator + sim


def test_generated_runtimes_follow_their_description() -> None:
    params = WeekParams(seed=3, days=2, runtime_per_description=0.75, hang_fraction=0.0)
    jobs = generate(params)
    runs: dict[str, list[float]] = {}
    for j in jobs:
        runs.setdefault(str(j.body["description"]), []).append(math.log(j.runtime))  # type: ignore[index]
    repeated = [v for v in runs.values() if len(v) >= 5]
    assert len(repeated) > 20
    within = sum(_var(v) * len(v) for v in repeated) / sum(len(v) for v in repeated)
    overall = _var([x for v in repeated for x in v])
    assert within < 0.5 * overall  # the description explains most of the spread
    # share 0: the old independent runtimes, same jobs otherwise
    iid = generate(replace(params, runtime_per_description=0.0))
    assert [(j.submit, j.nodes, j.priority) for j in iid] == [
        (j.submit, j.nodes, j.priority) for j in jobs
    ]


def _var(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def test_the_dispatcher_learns_estimates_from_the_jobs_it_runs() -> None:
    params = WeekParams(
        seed=5,
        days=1,
        runtime_per_description=0.75,
        pr_runs_per_day=2,
        other_runs_per_day=0,
        urgent_runs_per_day=0,
        hang_fraction=0.0,
        nightlies=(("rados", "smithi", 30, 40),),
    )
    jobs = generate(params)
    lab = lab_nodes(str(FIXTURES / "labs" / "sepia.yaml"))
    scheduler = OptiallocScheduler(
        name="default",
        policy=runtime_policy(),
        nodes=lab,
        jobs=jobs,
        origin=params.origin,
    )
    names: dict[str, list[str]] = {}
    for n in lab:
        names.setdefault(n.machine_type, []).append(n.name)
    result = simulate(jobs, scheduler, names, tick_s=60.0)
    assert all(r.start is not None for r in result.records)
    learned = scheduler.dispatcher.runtimes.estimates()
    assert learned and scheduler.rejected == 0
    # each estimate is the geometric mean of that description's (tick-rounded) runs
    for description, estimate in list(learned.items())[:10]:
        ran = [
            r.end - r.start  # type: ignore[operator]
            for r in result.records
            if r.job.body and r.job.body.get("description") == description
        ]
        assert min(ran) - 60 <= estimate <= max(ran) + 60
        assert scheduler.dispatcher.runtimes.runs(description) == len(ran)


def test_positions_list_shorter_jobs_first_as_the_objective_does() -> None:
    # No free node: nothing starts, and the queue lists the short job first although
    # the long one is older (both at priority 100); without estimates, the older first.
    lab = nodes("smithi", 1)
    running = (RunningJob(job("r", 1, owner="x"), (lab[0].name,), T0),)
    queue = (
        job("long", 1, description=DESC_A, waited_h=2.0),
        job("short", 1, description=DESC_B, waited_h=1.0),
    )
    learned = {DESC_A: 4 * 3600.0, DESC_B: 600.0}
    snap = Snapshot(T0, tuple(lab), queue, running, runtime_estimates=learned)
    plan = solve(snap, runtime_policy())
    assert [w.job_id for w in sorted(plan.waiting, key=lambda w: w.position)] == ["short", "long"]
    blind = solve(replace(snap, runtime_estimates={}), runtime_policy())
    assert [w.job_id for w in sorted(blind.waiting, key=lambda w: w.position)] == ["long", "short"]
