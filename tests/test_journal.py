"""The dispatcher's journal on a real SQLite file: rows, transitions, tick counter, last plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from optialloc.dispatch.journal import (
    JOURNAL_FILE,
    Journal,
    job_from_json,
    job_to_json,
    last_positions,
)
from optialloc.domain import Job

NOW = datetime(2026, 11, 24, 18, 0, 0, tzinfo=UTC)


def _job(job_id: str = "7", **kw: object) -> Job:
    fields: dict[str, object] = dict(
        job_id=job_id,
        run="run-a",
        owner="scheduled_me@host",
        priority=75,
        machine_types=("smithi", "mira"),
        nodes_needed=2,
        queued_at=NOW - timedelta(hours=1),
        tube="multi",
        os_type="ubuntu",
        last_in_suite=True,
        body={"roles": [["mon.a"], ["osd.0"]], "name": "run-a", "seed": 3},
    )
    fields.update(kw)
    return Job(**fields)  # type: ignore[arg-type]


def test_job_round_trips_through_json_with_its_body() -> None:
    job = _job()
    back = job_from_json(job_to_json(job))
    assert back == job
    assert back.body == job.body
    assert back.queued_at.tzinfo is not None


def test_rows_move_through_states_and_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / JOURNAL_FILE)
    journal = Journal(path)
    row_id = journal.intent(_job(), ["smithi001", "mira001"], "/a/run-a/7", 3, NOW)
    journal.advance(row_id, "locked", NOW)
    journal.advance(row_id, "running", NOW, pid=1234, pgid=1234, started_at=NOW)
    journal.close()

    journal = Journal(path)
    (row,) = journal.open_rows()
    assert (row.state, row.pid, row.pgid, row.nodes, row.tick) == (
        "running",
        1234,
        1234,
        ("smithi001", "mira001"),
        3,
    )
    assert row.started_at == NOW
    assert row.job == _job()
    journal.advance(row_id, "done", NOW, exit_status=0, node_action="unlock", disposition="delete")
    assert journal.open_rows()[0].state == "done"
    journal.settle(row_id, NOW)
    assert journal.open_rows() == []
    assert [r.job_id for r in journal.rows_for("7")] == ["7"]
    journal.close()


def test_advance_refuses_unknown_columns(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / JOURNAL_FILE))
    row_id = journal.intent(_job(), [], "/a", 1, NOW)
    with pytest.raises(ValueError, match="unknown column"):
        journal.advance(row_id, "running", NOW, colour="red")


def test_tick_counter_continues_across_restarts(tmp_path: Path) -> None:
    path = str(tmp_path / JOURNAL_FILE)
    journal = Journal(path)
    assert [journal.next_tick() for _ in range(3)] == [1, 2, 3]
    journal.close()
    assert Journal(path).next_tick() == 4


def test_last_positions_reads_the_last_plan_from_the_state_dir(tmp_path: Path) -> None:
    assert last_positions(str(tmp_path)) == {}
    journal = Journal(str(tmp_path / JOURNAL_FILE))
    journal.record_plan(NOW, [("1", 1, "lower_priority", "x"), ("2", 2, "not_enough_nodes", "")])
    journal.record_plan(NOW, [("2", 1, "not_enough_nodes", "needs 4 smithi, 2 free")])
    assert last_positions(str(tmp_path)) == {"2": (1, "not_enough_nodes", "needs 4 smithi, 2 free")}


def test_memory_journal_for_the_simulator() -> None:
    journal = Journal(":memory:")
    row_id = journal.intent(_job(), ["smithi001"], "/a", 1, NOW)
    assert journal.get(row_id) is not None
    assert journal.open_rows()[0].job_id == "7"


def test_prune_forgets_only_old_settled_attempts(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / JOURNAL_FILE))
    old = journal.intent(_job("1"), [], "/a/1", 1, NOW - timedelta(days=40))
    journal.settle(old, NOW - timedelta(days=40))
    still_open = journal.intent(_job("2"), [], "/a/2", 1, NOW - timedelta(days=40))
    recent = journal.intent(_job("3"), [], "/a/3", 1, NOW)
    journal.settle(recent, NOW)
    assert journal.prune(NOW - timedelta(days=30)) == 1
    assert [r.id for r in journal.all_rows()] == [still_open, recent]
