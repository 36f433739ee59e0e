"""The workload family (generator knobs), the new fair metrics and the targets (issue 17)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from optialloc.policy import default_policy
from optialloc.ranking import reservation_order_s, start_bound_s
from optialloc.sim.family import family, targets
from optialloc.sim.generate import WeekParams, generate
from optialloc.sim.metrics import RATIO_FLOOR_S, summarize
from optialloc.sim.model import JobRecord, SimJob, SimResult
from tests.conftest import REPO

#: `whatif --json` keys per scheduler before issue 17: scripts compare runs with them,
#: so they may be added to, never renamed or dropped.
PINNED_KEYS = {
    "jobs", "never_started", "window_start_s", "window_end_s", "utilization",
    "mean_wait_s", "p50_wait_s", "p95_wait_s", "p99_wait_s", "max_wait_s",
    "mean_bounded_slowdown", "priority_weighted_wait_s", "share_wait_over_24h",
    "max_wait_multi_node_s", "max_wait_1_node_s", "worst_4_vs_1_node_max_wait_ratio",
    "jain_owners", "owners", "runs_finished", "mean_run_turnaround_s",
    "max_run_turnaround_s", "solver_ticks", "solver_p50_s", "solver_p99_s",
    "solver_max_gap", "solver_status", "plans_rejected", "sim_wall_s",
    "max_wait_by_band_s", "max_wait_by_band_and_nodes_s", "per_machine_type",
}  # fmt: skip
NEW_KEYS = {
    "priority_weighted_run_turnaround_s", "worst_4_vs_1_node_max_wait_ratio_floor_1h",
    "max_wait_ratio_4_vs_1_node_by_band_floor_1h", "max_wait_over_bound", "jobs_past_bound",
    "last_in_suite_jobs", "last_in_suite_mean_wait_s", "last_in_suite_max_wait_s", "decisions",
}  # fmt: skip
LAB = (("smithi", 20), ("mira", 10), ("gibba", 4))


def test_whatif_json_keeps_every_pinned_key() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "optialloc", "whatif", "--lab", "demo", "--workload", "demo",
         "--baseline", "teuthology", "--baseline", "greedy", "--json", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"default", "teuthology", "greedy"} <= set(data)
    for name, metrics in data.items():
        missing = (PINNED_KEYS | NEW_KEYS) - set(metrics)
        assert not missing, (name, missing)
        assert metrics["decisions"].startswith("serve's: on every arrival and finish")


def _week(**kw: object) -> list[SimJob]:
    base = WeekParams(seed=3, days=2, scale=0.1, lab=LAB, target_load=1.0)
    return generate(replace(base, **kw))  # type: ignore[arg-type]


def _load(jobs: list[SimJob], days: float = 2) -> dict[str, float]:
    demand: dict[str, float] = {}
    for j in jobs:
        demand[j.machine_types[0]] = demand.get(j.machine_types[0], 0.0) + j.nodes * j.runtime
    return {mt: demand.get(mt, 0.0) / (n * days * 86400) for mt, n in LAB}


def test_target_load_holds_per_type_and_a_scarce_type_gets_its_own() -> None:
    for load in (0.9, 1.1):
        assert _load(_week(target_load=load)) == pytest.approx(
            {"smithi": load, "mira": load, "gibba": load}, rel=0.01
        )
    assert _load(_week(type_load=(("gibba", 1.3),)))["gibba"] == pytest.approx(1.3, rel=0.01)


def test_big_share_last_in_suite_burst_and_scale() -> None:
    plain = _week()
    big = _week(big_share=0.3)
    share = sum(j.nodes >= 4 for j in big) / len(big)
    assert 0.22 < share < 0.38 and max(j.nodes for j in big) == 8
    assert max(j.nodes for j in plain) <= 4
    with_last = _week(last_in_suite=True)
    last = [j for j in with_last if j.last_in_suite]
    assert last and all(j.nodes == 0 and j.body and j.body["last_in_suite"] for j in last)
    assert len(last) == len({j.run for j in with_last})
    burst = _week(burst_day=1, burst_factor=4.0)
    day1 = [j for j in burst if 86400 + 9 * 3600 <= j.submit < 86400 + 12 * 3600]
    assert len({j.run for j in day1}) > len(
        {j.run for j in plain if 86400 + 9 * 3600 <= j.submit < 86400 + 12 * 3600}
    )
    assert len(_week(scale=0.2)) > 1.5 * len(plain)


def test_family_has_train_and_test_weeks_covering_every_knob() -> None:
    weeks = family()
    assert len(weeks) >= 12 and len({w.seed for w in weeks}) == len(weeks)
    test = [w for w in weeks if w.split == "test"]
    train = [w for w in weeks if w.split == "train"]
    assert train and len(test) >= 8
    for split in (train, test):
        assert {w.r2 for w in split} == {0.0, 0.3, 0.75}
        assert {w.load for w in split} == {0.9, 1.0, 1.1}
    shapes = " ".join(w.shape for w in test)
    for shape in ("big", "scarce", "burst", "nightly", "base"):
        assert shape in shapes


def _rec(job_id: str, nodes: int, prio: int, submit: float, start: float, run: str) -> JobRecord:
    job = SimJob(job_id, int(job_id), submit, 100.0, nodes, ("a",), prio, "o", run)
    return JobRecord(job, start, start + 100.0, "a", tuple(f"a{k}" for k in range(nodes)))


def test_floored_ratio_weighted_turnaround_and_bound() -> None:
    records = [
        _rec("1", 1, 100, 0, 125, "r"),  # waits 125 s
        _rec("2", 4, 100, 0, 412, "r"),  # waits 412 s: 412 / 125 = 3.3, floored 1.0
        _rec("3", 1, 1000, 0, 10000, "n"),
        _rec("4", 6, 1000, 0, 3 * 3600 + 10000, "n"),
    ]
    result = SimResult("t", {"a": 8}, records)
    bound = 5000.0
    m = summarize(result, bound_s=lambda job: bound)
    assert m["worst_4_vs_1_node_max_wait_ratio"] == pytest.approx(412 / 125)
    by_band = m["max_wait_ratio_4_vs_1_node_by_band_floor_1h"]
    assert by_band["100-149"] == 1.0
    assert by_band[">=1000"] == pytest.approx((3 * 3600 + 10000) / 10000)
    assert m["worst_4_vs_1_node_max_wait_ratio_floor_1h"] == by_band[">=1000"]
    # runs: r = 512 s (w 10), n = 3 h + 10100 s (w 1)
    n_turn = 3 * 3600 + 10100
    assert m["priority_weighted_run_turnaround_s"] == pytest.approx((10 * 512 + n_turn) / 11)
    assert m["jobs_past_bound"] == 2
    assert m["max_wait_over_bound"] == pytest.approx((3 * 3600 + 10000) / bound)
    assert RATIO_FLOOR_S == 3600


def test_start_bound_is_rank_plus_max_job_time() -> None:
    policy = default_policy()
    for prio in (50, 100, 200, 1000):
        assert start_bound_s(prio, policy) == reservation_order_s(prio, policy) + float(
            policy.max_job_time_s
        )


def _metrics(pw: float, turn: float, util: float, ratio: float, band_max: float) -> dict:
    return {
        "priority_weighted_wait_s": pw, "priority_weighted_run_turnaround_s": turn,
        "utilization": util, "worst_4_vs_1_node_max_wait_ratio_floor_1h": ratio,
        "jobs_past_bound": 0, "jain_owners": 0.99,
        "max_wait_by_band_s": {"100-149": band_max, ">=1000": 9e9},
    }  # fmt: skip


def test_targets_pass_and_fail() -> None:
    week = {
        "default": _metrics(50, 70, 0.9, 2.0, 7000),
        "teuthology": _metrics(100, 100, 0.85, 9.0, 8000),
        "greedy": _metrics(60, 80, 0.9, 40.0, 100),
    }
    assert all(t.ok for t in targets(week))
    week["default"] = _metrics(61, 81, 0.84, 3.5, 8100)
    failed = {t.name for t in targets(week) if not t.ok}
    assert failed == {
        "pw wait / teuthology", "pw wait / greedy", "pw run turnaround / teuthology",
        "utilization - teuthology's (pp)", "worst band 4+/1-node ratio (1 h floor)",
        "urgent bands: max wait / teuthology's (worst)",
    }  # fmt: skip
