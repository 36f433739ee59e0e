"""Metrics on tiny runs computed by hand (optialloc.sim.metrics)."""

from __future__ import annotations

import pytest

from optialloc.sim.metrics import band_of, bounded_slowdown, jain, percentile, summarize
from optialloc.sim.model import JobRecord, SimJob, SimResult, TickStat


def _rec(
    job_id: str,
    submit: float,
    runtime: float,
    nodes: int,
    prio: int,
    owner: str,
    run: str,
    start: float | None,
) -> JobRecord:
    job = SimJob(job_id, int(job_id), submit, runtime, nodes, ("a",), prio, owner, run)
    if start is None:
        return JobRecord(job)
    names = tuple(f"a{k}" for k in range(nodes))
    return JobRecord(job, start, start + runtime, "a", names)


def _tiny() -> SimResult:
    records = [
        _rec("1", 0, 100, 1, 100, "x", "r1", 0),
        _rec("2", 0, 50, 2, 1000, "y", "r2", 100),
        _rec("3", 200, 5, 1, 10, "x", "r1", 210),
    ]
    ticks = [TickStat(0, 0.010, "OPTIMAL", 0.0, 1), TickStat(100, 0.030, "FEASIBLE", 0.25, 1)]
    return SimResult("t", {"a": 2}, records, ticks=ticks)


def test_summary_of_a_hand_computed_run() -> None:
    m = summarize(_tiny())
    # waits 0, 100, 10
    assert m["mean_wait_s"] == pytest.approx(110 / 3)
    assert m["p50_wait_s"] == pytest.approx(10)
    assert m["p95_wait_s"] == pytest.approx(10 + 0.9 * 90)
    assert m["max_wait_s"] == 100
    # bounded slowdowns 1, 3, (10 + 5) / max(5, 10) = 1.5
    assert m["mean_bounded_slowdown"] == pytest.approx(5.5 / 3)
    # weights 1000/100 = 10, 1000/1000 = 1, 1000/10 = 100
    assert m["priority_weighted_wait_s"] == pytest.approx((0 * 10 + 100 * 1 + 10 * 100) / 111)
    # window [0 + 5 % of 200, 200] = [10, 200]; busy 90 (job 1) + 2 x 50 (job 2) + 0 (job 3)
    assert (m["window_start_s"], m["window_end_s"]) == (10, 200)
    assert m["utilization"] == pytest.approx(190 / (2 * 190))
    # owner x: received 100 of 105 node-s demanded; y: 100 of 100
    x, y = 100 / 105, 1.0
    assert m["jain_owners"] == pytest.approx((x + y) ** 2 / (2 * (x * x + y * y)))
    assert m["max_wait_multi_node_s"] == 100
    assert m["max_wait_1_node_s"] == 10
    # run r1: 215 - 0, run r2: 150 - 0
    assert m["mean_run_turnaround_s"] == pytest.approx((215 + 150) / 2)
    assert m["share_wait_over_24h"] == 0
    assert m["never_started"] == 0
    assert m["solver_ticks"] == 2
    assert m["solver_p50_s"] == pytest.approx(0.020)
    assert m["solver_max_gap"] == 0.25
    assert m["solver_status"] == {"OPTIMAL": 1, "FEASIBLE": 1}
    assert m["max_wait_by_band_s"] == {"10-49": 10, "100-149": 0, ">=1000": 100}


def test_a_job_that_never_started_counts_until_the_end_and_is_reported() -> None:
    result = _tiny()
    result.records.append(_rec("4", 50, 10, 1, 1000, "z", "r3", None))
    m = summarize(result)
    assert m["never_started"] == 1
    # simulation ended at 215 (last end): job 4 waited at least 215 - 50
    assert m["max_wait_s"] == 165
    assert m["runs_finished"] == 2


def test_starvation_ratio_compares_4_node_and_1_node_jobs_of_a_band() -> None:
    records = [
        _rec("1", 0, 10, 1, 1000, "x", "r", 50),
        _rec("2", 0, 10, 4, 1000, "x", "r", 200),
        _rec("3", 0, 10, 4, 100, "x", "r", 0),  # no 1-node job in its band: not compared
    ]
    m = summarize(SimResult("t", {"a": 4}, records))
    assert m["worst_4_vs_1_node_max_wait_ratio"] == pytest.approx(4.0)
    assert m["share_wait_over_24h"] == 0


def test_small_helpers() -> None:
    assert jain([1, 1, 1]) == 1.0
    assert jain([1, 0]) == 0.5
    assert jain([]) == 1.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([], 99) == 0.0
    assert bounded_slowdown(0, 1) == 1.0
    assert bounded_slowdown(90, 5) == pytest.approx(9.5)
    assert [band_of(p) for p in (5, 10, 75, 100, 999, 1000)] == [
        "<10",
        "10-49",
        "75-99",
        "100-149",
        "200-999",
        ">=1000",
    ]


def test_a_snapshot_replay_measures_utilization_over_the_replay() -> None:
    # both jobs were submitted before the replay and ran after the last submit
    records = [_rec("1", -100, 50, 1, 1000, "x", "r", 0), _rec("2", -50, 100, 2, 1000, "x", "r", 0)]
    m = summarize(SimResult("t", {"a": 2}, records))
    assert (m["window_start_s"], m["window_end_s"]) == (0, 100)
    assert m["utilization"] == pytest.approx((50 + 200) / (2 * 100))


def test_when_nothing_ran_waits_count_until_the_last_event() -> None:
    records = [
        _rec("1", 0, 10, 4, 1000, "x", "r", None),
        _rec("2", 30, 10, 1, 1000, "x", "r", None),
    ]
    m = summarize(SimResult("t", {"a": 2}, records, end_time=30.0))
    assert m["never_started"] == 2
    assert m["max_wait_s"] == 30 and m["mean_wait_s"] == 15
    assert m["utilization"] == 0
