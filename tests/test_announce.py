"""Queue states for pulpito (`optialloc.dispatch.announce`): queued, waiting, dead, once each.

A real embedded queue and the real outbox reporter (its sender not started,
so what would be sent is read from the outbox).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from serve_support import job_body

from optialloc.dispatch.announce import Announcer
from optialloc.domain import Hold, Plan, SolverStats, Waiting, WaitReason
from optialloc.inventory.paddles_client import PaddlesClient
from optialloc.inventory.reporter import NullReporter, OutboxReporter
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.teuthology import dump_body

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def plan(
    held: tuple[str, ...] = (), invalid: dict[str, str] | None = None, explained: bool = True
) -> Plan:
    waiting = tuple(
        Waiting(job_id, 1, WaitReason.INVALID, detail) for job_id, detail in (invalid or {}).items()
    )
    return Plan(
        taken_at=NOW,
        starts=(),
        held=tuple(Hold(f"n{i}", job_id) for i, job_id in enumerate(held)),
        waiting=waiting if explained else (),
        solver=SolverStats(status="OPTIMAL", wall_s=0.0, objective=0.0, bound=0.0),
        explained=explained,
    )


def setup(tmp_path: Path) -> tuple[EmbeddedQueue, OutboxReporter, Announcer, list[str]]:
    queue = EmbeddedQueue(str(tmp_path / "queue.sqlite"))
    ids = [queue.put("smithi", dump_body(job_body(1, run=f"run-{i}")), 100) for i in range(3)]
    client = PaddlesClient("http://127.0.0.1:9", setting="results_server")
    reporter = OutboxReporter(client, str(tmp_path / "reports.sqlite"), start=False)
    return queue, reporter, Announcer(reporter, queue), ids


def sent(reporter: OutboxReporter) -> list[tuple[str, str]]:
    rows = reporter.outbox._db.execute("SELECT job_id, status FROM outbox ORDER BY seq")
    return [(j, s) for j, s in rows]


def test_each_change_is_reported_once(tmp_path: Path) -> None:
    queue, reporter, announcer, ids = setup(tmp_path)
    a, b, c = ids
    jobs = queue.pending()
    assert announcer.observe(jobs, None) == 3
    assert announcer.observe(jobs, None) == 0  # nothing changed: nothing written
    assert announcer.observe(jobs, plan(held=(b,))) == 1
    # the hold is dropped (b: queued again) and c can never run here (dead)
    assert announcer.observe(jobs, plan(invalid={c: "no node of machine type mira"})) == 2
    # a tick without explanations keeps c dead (no reason known this tick)
    assert announcer.observe(jobs, plan(explained=False)) == 0
    assert sent(reporter) == [
        (a, "queued"),
        (b, "queued"),
        (c, "queued"),
        (b, "waiting"),
        (b, "queued"),
        (c, "dead"),
    ]
    due = reporter.outbox.due(10)  # one at a time per job, oldest first
    assert [(r.job_id, r.status) for r in due] == [(a, "queued"), (b, "queued"), (c, "queued")]
    rows = reporter.outbox._db.execute("SELECT doc FROM outbox WHERE status = 'dead'").fetchall()
    assert '"failure_reason": "cannot run in this lab: no node of machine type mira"' in rows[0][0]
    assert '"success": false' in rows[0][0]
    # an explained plan without the reason: runnable again, back to queued
    assert announcer.observe(jobs, plan()) == 1 and sent(reporter)[-1] == (c, "queued")
    reporter.sender.close()
    queue.close()


def test_a_started_job_is_left_to_the_commit_path(tmp_path: Path) -> None:
    queue, reporter, announcer, ids = setup(tmp_path)
    jobs = queue.pending()
    reporter.report(jobs[0], "running", pid=1)
    assert announcer.observe(jobs, None) == 2
    assert reporter.last_status(ids[0]) == "running"
    reporter.sender.close()
    queue.close()


def test_a_job_buried_on_entry_is_reported_dead_with_the_reason(tmp_path: Path) -> None:
    queue, reporter, announcer, _ = setup(tmp_path)
    bad = queue.put("smithi", "name: broken-run\nroles: not-a-list\n", 100)
    assert announcer.observe(queue.pending(), None) == 4
    assert (bad, "dead") in sent(reporter)
    rows = reporter.outbox._db.execute("SELECT run, doc FROM outbox WHERE job_id = ?", (bad,))
    run, doc = rows.fetchone()
    assert run == "broken-run" and "roles" in doc
    assert announcer.observe(queue.pending(), None) == 0  # once
    reporter.sender.close()
    queue.close()


def test_without_a_results_server_nothing_is_announced(tmp_path: Path) -> None:
    queue = EmbeddedQueue(str(tmp_path / "queue.sqlite"))
    queue.put("smithi", dump_body(job_body(1)), 100)
    announcer = Announcer(NullReporter(), queue)
    assert not announcer.enabled and announcer.observe(queue.pending(), None) == 0
    queue.close()


def test_a_job_deleted_from_the_queue_has_its_record_removed(tmp_path: Path) -> None:
    queue, reporter, announcer, ids = setup(tmp_path)
    assert announcer.observe(queue.pending(), None) == 3
    queue.delete(ids[0])  # `optialloc queue delete`
    queue.bury(ids[1], "body: killed by the operator")
    assert announcer.observe(queue.pending(), None) == 2
    assert sent(reporter)[-2:] == [(ids[1], "dead"), (ids[0], "deleted")]
    assert announcer.observe(queue.pending(), None) == 0  # once
    reporter.sender.close()
    queue.close()
