"""Estimated start per waiting job (`optialloc.sim.estimate`): a replay of a snapshot."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from solver_support import T0, job, nodes, snapshot

from optialloc.config import Config
from optialloc.dispatch.journal import Journal
from optialloc.dispatch.snapshotter import live_snapshot
from optialloc.domain import ESTIMATE_KEY, Job, RunningJob
from optialloc.inventory import open_inventory
from optialloc.policy import Policy, load_policy
from optialloc.queue import open_queue
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.sim.engine import simulate
from optialloc.sim.estimate import FALLBACK_RUNTIME_S, OVERDUE_FRACTION, estimate_starts
from optialloc.sim.estimate_accuracy import ALL, accuracy, format_table, measure
from optialloc.sim.scenario import load_scenario, make_scheduler
from optialloc.teuthology import dump_body

HOUR = timedelta(hours=1)


def timed(job_id: str, seconds: float, **kw: Any) -> Job:
    """A queued job whose body says how long it runs."""
    return job(job_id, body={ESTIMATE_KEY: seconds}, **kw)


def test_a_job_that_can_start_now_is_estimated_at_now() -> None:
    snap = snapshot(nodes("smithi", 2), [timed("a", 600), timed("b", 600, nodes_needed=2)])
    est = estimate_starts(snap, Policy())
    assert est["a"] == T0
    # b needs both nodes: it starts when a ends
    assert est["b"] == T0 + timedelta(seconds=600)


def test_a_job_behind_a_running_job_on_the_only_node_starts_at_its_expected_end() -> None:
    running = job("r", description="rados/basic", taken_at=T0 - timedelta(minutes=10))
    snap = snapshot(
        nodes("smithi", 1),
        [timed("q", 300)],
        running=(RunningJob(running, ("smithi001",), T0 - timedelta(minutes=10)),),
        runtime_estimates={"rados/basic": 3600.0},
    )
    est = estimate_starts(snap, Policy())
    assert est == {"q": T0 - timedelta(minutes=10) + HOUR}
    # the learned estimates may also be given apart from the snapshot
    est = estimate_starts(snap, Policy(), runtime_estimates={"rados/basic": 1800.0})
    assert est == {"q": T0 + timedelta(minutes=20)}


def test_estimates_follow_priority_order_one_after_the_other() -> None:
    # queued in the reverse order of their priority: priority decides
    queue = [
        timed("low", 100, priority=1000, waited_h=3),
        timed("mid", 200, priority=200, waited_h=2),
        timed("high", 300, priority=50, waited_h=1),
    ]
    est = estimate_starts(snapshot(nodes("smithi", 1), queue), Policy())
    assert est == {
        "high": T0,
        "mid": T0 + timedelta(seconds=300),
        "low": T0 + timedelta(seconds=500),
    }


def test_the_shipped_policy_and_the_validator_agree_with_the_plain_replay() -> None:
    queue = [
        timed(str(k), 600 * (k + 1), priority=100 + k, nodes_needed=1 + k % 3) for k in range(8)
    ]
    snap = snapshot(nodes("smithi", 4), queue)
    policy = load_policy("default")
    plain = estimate_starts(snap, policy)
    assert set(plain) == {j.job_id for j in queue}
    assert estimate_starts(snap, policy, validate=True) == plain
    assert min(plain.values()) == T0


def test_fallback_runtime_and_overdue_running_jobs() -> None:
    # no estimate anywhere: the fallback; an overdue running job ends a quarter of it later
    overdue = job("r", taken_at=T0 - 3 * HOUR)
    snap = snapshot(
        nodes("smithi", 1),
        [job("x"), job("y", priority=200)],
        running=(RunningJob(overdue, ("smithi001",), T0 - 3 * HOUR),),
    )
    est = estimate_starts(snap, Policy())
    first = T0 + timedelta(seconds=OVERDUE_FRACTION * FALLBACK_RUNTIME_S)
    assert est == {"x": first, "y": first + timedelta(seconds=FALLBACK_RUNTIME_S)}
    # with learned estimates, their median is the fallback
    learned = {"a": 100.0, "b": 1000.0, "c": 2000.0}
    est = estimate_starts(snap, Policy(), runtime_estimates=learned)
    assert est["y"] - est["x"] == timedelta(seconds=1000)


def test_no_estimate_beyond_the_horizon_or_for_a_paused_tube_or_an_oversized_job() -> None:
    queue = [
        timed("soon", 3000),
        timed("later", 3000, priority=200),
        timed("paused", 60, tube="smithi-paused", priority=10),
        timed("huge", 60, nodes_needed=5, priority=10),
    ]
    snap = snapshot(nodes("smithi", 1), queue, paused_tubes=frozenset({"smithi-paused"}))
    est = estimate_starts(snap, Policy(), horizon_s=2000)
    assert est == {"soon": T0}
    est = estimate_starts(snap, Policy(), horizon_s=8000)
    assert est == {"soon": T0, "later": T0 + timedelta(seconds=3000)}


def test_far_estimates_are_not_delayed_by_the_coarse_cadence() -> None:
    # ten one-node jobs of 1000 s in a row: decisions far ahead are up to
    # `max_cadence_s` apart, but each start is dated back to when the node was free
    queue = [timed(str(k), 1000, waited_h=10 - k) for k in range(10)]
    est = estimate_starts(snapshot(nodes("smithi", 1), queue), Policy(), max_cadence_s=3600)
    assert sorted(est.values()) == [T0 + timedelta(seconds=1000 * k) for k in range(10)]


def test_the_replay_logs_nothing_of_its_own_dispatcher(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    estimate_starts(snapshot(nodes("smithi", 1), [timed("a", 60)]), Policy())
    assert not [r for r in caplog.records if r.name.startswith("optialloc.dispatch")]
    logging.getLogger("optialloc.dispatch.dispatcher").info("the live dispatcher still logs")
    assert "the live dispatcher still logs" in caplog.text


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon_s"):
        estimate_starts(snapshot(nodes("smithi", 1), []), Policy(), horizon_s=0)


def _live_lab(tmp_path: Path) -> Config:
    """An embedded lab (real SQLite queue, the demo inventory) with 6 queued jobs, 1 running."""
    state = tmp_path / "state"
    state.mkdir()
    queue = EmbeddedQueue(str(state / "queue.sqlite"))
    for i in range(6):
        body = {
            "name": "run",
            "owner": f"o{i % 2}",
            "machine_type": "smithi",
            "priority": 100 + i,
            "roles": [["osd.0"], ["osd.1"]] * (1 + i % 2),
            "description": f"rados/{i % 3}",
        }
        queue.put("smithi", dump_body(body), 100 + i)
    queue.close()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"state_dir": str(state)}))
    config = Config(state_dir=str(state))
    journal = Journal(str(state / "journal.sqlite"))
    running = Job("99", "other-run", "carol", 50, ("smithi",), 1, T0)
    row = journal.intent(running, ["smithi001"], "/a/other-run/99", 1, T0)
    journal.advance(row, "running", T0, pid=1, pgid=1, started_at=T0)
    journal.close()
    return config


def _lab_state(config: Config) -> tuple[object, ...]:
    queue = open_queue(config)
    inventory = open_inventory(config)
    try:
        return (
            [(j.job_id, j.priority) for j in queue.pending()],
            list(queue.claimed()),
            list(queue.buried()),
            list(queue.stats()),
            sorted(inventory.nodes(), key=lambda n: n.name),
        )
    finally:
        queue.close()
        close = getattr(inventory, "close", None)
        if close is not None:
            close()


def _files(state: str) -> dict[str, tuple[int, int]]:
    out = {}
    for root, _, names in os.walk(state):
        for name in names:
            stat = os.stat(os.path.join(root, name))
            out[os.path.join(root, name)] = (stat.st_size, stat.st_mtime_ns)
    return out


def test_the_live_lab_and_queue_are_untouched(tmp_path: Path) -> None:
    config = _live_lab(tmp_path)
    snap = live_snapshot(config)
    before, files = _lab_state(config), _files(config.state_dir)
    est = estimate_starts(snap, load_policy("default"))
    # the demo lab has room for every job: all are estimated, some at once
    assert set(est) == {j.job_id for j in snap.queue}
    assert min(est.values()) == snap.taken_at
    assert _lab_state(config) == before
    assert _files(config.state_dir) == files
    assert [r.job_id for r in live_snapshot(config).running] == ["99"]


def test_accuracy_on_the_demo_week_leaves_the_simulation_unchanged() -> None:
    scenario = load_scenario(
        lab=str(REPO / "fixtures/labs/demo.yaml"),
        workload=str(REPO / "fixtures/workloads/demo.jsonl"),
    )
    policy = str(REPO / "models/default.yaml")
    result, samples = measure(scenario, policy, estimate_starts, every_arrival=1, every_hours=0.25)
    load = scenario.windows[0]
    plain = simulate(
        load.jobs,
        make_scheduler("policy", policy, scenario, load),
        scenario.names,
        cadence=scenario.cadence,
    )
    # estimating along the way changes nothing in the replay it watches
    assert [(r.job.job_id, r.start, r.nodes) for r in result.records] == [
        (r.job.job_id, r.start, r.nodes) for r in plain.records
    ]
    assert samples and all(s.at >= 0 for s in samples)
    report = accuracy(result, samples)
    for moment in ("at_submission", "before_start"):
        rows = report[moment]
        assert rows[ALL]["jobs"] == sum(row["jobs"] for band, row in rows.items() if band != ALL)
        assert all(0 <= row["median_abs_s"] <= row["p90_abs_s"] for row in rows.values())
    table = format_table(report)
    assert "| all | at submission |" in table and "| all | 1 h before |" in table
