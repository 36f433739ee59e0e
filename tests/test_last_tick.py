"""The last-tick record serve writes for the web view (`optialloc.dispatch.last_tick`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from optialloc.dispatch.dispatcher import TickReport
from optialloc.dispatch.last_tick import (
    LAST_TICK_FILE,
    TIME_BUCKETS_S,
    TickRecorder,
    read_last_tick,
    reason_class,
)
from optialloc.domain import Hold, Plan, SolverStats


def _report(tick: int, tick_s: float, **values: object) -> TickReport:
    plan = Plan(
        taken_at=datetime(2026, 12, 5, tzinfo=UTC),
        starts=(),
        held=(Hold("smithi001", "7"),),
        waiting=(),
        solver=SolverStats("FEASIBLE", objective=90.0, bound=100.0, wall_s=0.02),
    )
    return TickReport(
        tick=tick,
        taken_at=plan.taken_at,
        plan=plan,
        tick_s=tick_s,
        **values,  # type: ignore[arg-type]
    )


def test_record_keeps_the_last_tick_and_running_totals(tmp_path: Path) -> None:
    recorder = TickRecorder(str(tmp_path))
    recorder.record(_report(1, 0.03, started=["1", "2"], failed=[("3", "lock refused: busy")]))
    recorder.record(
        _report(2, 7.0, finished=[("1", 0)], error="paddles unreachable", failed=[("4", "x")])
    )
    record = read_last_tick(str(tmp_path))
    assert record is not None and record["tick"] == 2
    assert record["solver"]["status"] == "FEASIBLE" and abs(record["solver"]["gap"] - 0.1) < 1e-9
    assert record["held"] == [{"node": "smithi001", "for_job_id": "7"}]
    assert record["totals"] == {
        "started": 2,
        "finished": 1,
        "ticks": 2,
        "lock_failures": 1,
        "backend_outages": 1,
    }
    assert record["failed_by_class"] == {"lock_failed": 1, "other": 1}
    hist = record["histograms"]["tick_s"]
    assert hist["count"] == 2 and hist["le"] == list(TIME_BUCKETS_S)
    # cumulative buckets: 0.03 s counts from the 0.05 bucket on, 7 s from the 10 s bucket on
    assert hist["buckets"][TIME_BUCKETS_S.index(0.05)] == 1
    assert hist["buckets"][TIME_BUCKETS_S.index(10.0)] == 2
    assert hist["buckets"] == sorted(hist["buckets"])
    assert [p.name for p in tmp_path.iterdir()] == [LAST_TICK_FILE]  # no temporary left


def test_missing_or_garbage_record_reads_as_none(tmp_path: Path) -> None:
    assert read_last_tick(str(tmp_path)) is None
    (tmp_path / LAST_TICK_FILE).write_text("{half")
    assert read_last_tick(str(tmp_path)) is None
    (tmp_path / LAST_TICK_FILE).write_text(json.dumps([1, 2]))
    assert read_last_tick(str(tmp_path)) is None


def test_a_failed_write_never_fails_the_tick(tmp_path: Path) -> None:
    recorder = TickRecorder(str(tmp_path / "gone" / "deeper"))
    recorder.record(_report(1, 0.1))  # the directory does not exist: logged, not raised
    assert recorder.totals["ticks"] == 1


def test_reason_classes_are_few_and_stable() -> None:
    assert reason_class("could not lock smithi001: LockBusy") == "lock_failed"
    assert reason_class("killed: ran past its time limit of 3600 s") == "time_limit"
    assert reason_class("no progress for 900 s") == "no_progress"
    assert reason_class("body does not parse: bad YAML") == "malformed"
    assert reason_class("something new") == "other"
