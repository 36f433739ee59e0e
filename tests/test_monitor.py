"""The monitor: lease rules at their exact boundaries, and real hung/silent/healthy jobs."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from serve_support import Lab, OffsetClock, process_gone, wait_for

from optialloc.dispatch.monitor import lease_lost, time_limit
from optialloc.domain import Job
from optialloc.policy import default_policy

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def _job(**kw: object) -> Job:
    fields: dict[str, object] = dict(
        job_id="1",
        run="r",
        owner="o",
        priority=100,
        machine_types=("smithi",),
        nodes_needed=1,
        queued_at=T0,
    )
    fields.update(kw)
    return Job(**fields)  # type: ignore[arg-type]


def test_killed_exactly_at_the_time_limit_not_one_second_before() -> None:
    assert lease_lost(T0 + timedelta(seconds=99), T0, 100) is None
    reason = lease_lost(T0 + timedelta(seconds=100), T0, 100)
    assert reason == "max_job_time exceeded: ran 100 s, limit 100 s"
    assert lease_lost(T0 + timedelta(seconds=100), T0, 100) == reason  # same verdict every time


def test_progress_threshold_boundary_counts_from_the_last_log_growth() -> None:
    grew = T0 + timedelta(seconds=50)
    kw = dict(progress_at=grew, progress_timeout_s=30.0)
    assert lease_lost(grew + timedelta(seconds=29), T0, 1000, **kw) is None  # type: ignore[arg-type]
    assert "no progress: log unchanged for 30 s" in (
        lease_lost(grew + timedelta(seconds=30), T0, 1000, **kw) or ""
    )  # type: ignore[arg-type]
    # no log yet: silence counts from the start
    assert lease_lost(T0 + timedelta(seconds=29), T0, 1000, progress_timeout_s=30) is None
    assert lease_lost(T0 + timedelta(seconds=30), T0, 1000, progress_timeout_s=30) is not None
    # no progress_timeout configured: silence never kills
    assert lease_lost(T0 + timedelta(seconds=999), T0, 1000, progress_at=None) is None


def test_time_limit_from_config_policy_and_per_priority_rules() -> None:
    policy = default_policy()
    assert time_limit(_job(), 259200, policy) == min(259200, policy.max_job_time_s)
    assert time_limit(_job(), 600, policy) == 600

    class RulePolicy:
        max_job_time_s = 7200.0
        job_time_limits = ({"max_priority": 50, "seconds": 60}, {"suite": "rados", "seconds": 300})

    assert time_limit(_job(priority=40), 259200, RulePolicy()) == 60
    assert time_limit(_job(priority=100, body={"suite": "rados"}), 259200, RulePolicy()) == 300
    assert time_limit(_job(priority=100, body={"suite": "rbd"}), 259200, RulePolicy()) == 7200


def test_hung_job_past_its_limit_is_killed_with_its_children_and_buried(tmp_path: Path) -> None:
    # The job forks a grandchild and both ignore nothing; both must die.
    clock = OffsetClock()
    lab = Lab(
        tmp_path,
        "sh -c 'sleep 300 & echo child $! > {archive_path}/child; wait'",
        clock=clock,
        max_job_time=100,
        kill_grace_seconds=1.0,
    )
    job_id = lab.put(nodes=1)
    lab.tick()
    (handle,) = lab.dispatcher.handles()
    child_file = Path(handle.archive_path) / "child"
    wait_for(lambda: child_file.exists() and child_file.read_text().endswith("\n"))
    child = int(child_file.read_text().split()[1])
    clock.advance(99)
    lab.tick()
    assert os.path.exists(f"/proc/{handle.pid}") and lab.dispatcher.handles()
    clock.advance(1)  # exactly at the limit
    report = lab.tick()
    assert report.killing == [(job_id, "max_job_time exceeded: ran 100 s, limit 100 s")]
    wait_for(lambda: process_gone(child) and process_gone(handle.pid))
    report = lab.run_until_idle()
    buried = {b.job_id: b.reason for b in lab.queue.buried()}
    assert "max_job_time exceeded" in buried[job_id]
    assert [n.name for n in lab.inventory.nodes() if n.locked] == []


def test_silent_job_is_killed_after_the_progress_threshold(tmp_path: Path) -> None:
    clock = OffsetClock()
    lab = Lab(
        tmp_path,
        "sh -c 'echo started; exec sleep 300'",
        clock=clock,
        progress_timeout=60,
        kill_grace_seconds=1.0,
    )
    job_id = lab.put(nodes=2)
    lab.tick()
    (handle,) = lab.dispatcher.handles()
    log = Path(handle.archive_path) / "output.log"
    wait_for(lambda: log.exists() and log.stat().st_size > 0)
    clock.advance(59)
    assert lab.tick().killing == []
    clock.advance(2)
    assert lab.tick().killing[0][1].startswith("no progress: log unchanged for")
    lab.run_until_idle()
    assert "no progress" in {b.job_id: b.reason for b in lab.queue.buried()}[job_id]
    assert process_gone(handle.pid)
    assert [n.name for n in lab.inventory.nodes() if n.locked] == []


def test_healthy_long_job_that_keeps_writing_is_left_alone(tmp_path: Path) -> None:
    lab = Lab(
        tmp_path,
        "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.1; done'",
        progress_timeout=5,
        max_job_time=3600,
    )
    job_id = lab.put(nodes=1)
    lab.tick()
    (handle,) = lab.dispatcher.handles()
    kills = []
    deadline = time.monotonic() + 30
    while lab.dispatcher.handles() and time.monotonic() < deadline:
        kills += lab.tick().killing
        time.sleep(0.1)
    assert kills == []
    assert lab.queue.buried() == []
    assert lab.finished_ok(job_id)
    assert (Path(handle.archive_path) / "output.log").read_text().split() == [
        str(i) for i in range(1, 11)
    ]
