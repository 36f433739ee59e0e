"""The batched commit's parts: batch claim (both queue adapters), batch journal writes,
parallel launches, and a whole tick's batch when one job or one backend fails.

Crash safety of the batch (kill -9 in the middle of it) is in test_serve_crash.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from queue_support import body, open_beanstalk, open_embedded
from serve_support import lab_nodes, process_gone, wait_for
from test_dispatcher import _dispatcher, _job, _plan

from optialloc.dispatch.journal import Journal
from optialloc.errors import OptiallocError
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.ports import JobQueue, LaunchHandle
from optialloc.queue import store as queue_store
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.runners import CommandRunner
from optialloc.runners.process import LaunchFailed, read_pid

NOW = datetime(2026, 11, 25, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["embedded", "beanstalk"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], JobQueue]]:
    opened: list[JobQueue] = []

    def make() -> JobQueue:
        if request.param == "beanstalk":
            opened.append(open_beanstalk(tmp_path, request.getfixturevalue("beanstalkd").port))
        else:
            opened.append(open_embedded(tmp_path))
        return opened[-1]

    yield make
    for q in opened:
        q.close()


def test_claim_many_takes_only_pending_jobs_once(opener: Callable[[], JobQueue]) -> None:
    a, b = opener(), opener()
    ids = [a.put("smithi", body(f"j{i}"), 100) for i in range(5)]
    a.pending()
    assert a.claim(ids[0])  # claimed by the single claim
    a.bury(ids[1], "bad")
    a.delete(ids[2])
    got = a.claim_many([*ids, "999999"])  # type: ignore[attr-defined]
    assert got == {
        ids[0]: False,
        ids[1]: False,
        ids[2]: False,
        ids[3]: True,
        ids[4]: True,
        "999999": False,
    }
    # another adapter (process) sees them claimed and cannot take them again
    assert b.claim_many(ids[3:]) == {ids[3]: False, ids[4]: False}  # type: ignore[attr-defined]
    assert sorted(j.job_id for j in b.claimed()) == sorted([ids[0], ids[3], ids[4]])
    assert [j.job_id for j in b.pending()] == []


def test_claim_many_parses_scanned_bodies_and_buries_bad_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_store, "SCAN_AT", 1)  # store bodies scanned, not parsed
    queue = EmbeddedQueue(str(tmp_path / "q.sqlite"))
    queue.validator.start_if_needed = lambda: None  # type: ignore[method-assign]  # claim only
    # scheduling fields fine, but not YAML: the scan lets it in, the full parse refuses it
    bad = queue.put("smithi", body("broken") + "extra:\n  a: b: c\n", 100)
    good = queue.put("smithi", body("good"), 100)
    assert [r.checked for r in queue.store.rows_by_id([bad, good])] == [False, False]
    assert queue.claim_many([bad, good]) == {bad: False, good: True}
    (buried,) = queue.buried()
    assert buried.job_id == bad and buried.reason.startswith("body: not valid YAML")
    assert [j.job_id for j in queue.claimed()] == [good]
    queue.close()


def test_lock_each_locks_each_job_all_or_nothing_in_one_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "inventory.sqlite")
    inventory = EmbeddedInventory(path, "optialloc@test")
    inventory.import_nodes(lab_nodes(6))
    other = EmbeddedInventory(path, "someone@else")
    other.lock(["smithi002"], "theirs")
    results = inventory.lock_each(
        [
            (["smithi001"], "/a/1", None),
            (["smithi003", "smithi002"], "/a/2", None),  # smithi002 is taken: none of it locked
            (["nosuch"], "/a/3", None),
            (["smithi004", "smithi005"], "/a/4", "scheduled_bob@lab"),
            (["smithi005"], "/a/5", None),  # taken by the request before, in the same batch
            (["smithi001"], "/a/1", None),  # the same job again: idempotent
        ]
    )
    assert [type(r).__name__ for r in results] == [
        "list",
        "LockBusy",
        "NotFound",
        "list",
        "LockBusy",
        "list",
    ]
    held = {n.name: n.description for n in inventory.nodes() if n.locked}
    assert held == {
        "smithi001": "/a/1",
        "smithi002": "theirs",
        "smithi004": "/a/4",
        "smithi005": "/a/4",
    }
    assert [n.name for n in results[3]] == ["smithi004", "smithi005"]  # type: ignore[union-attr]
    assert {n.locked_by for n in results[3]} == {"scheduled_bob@lab"}  # type: ignore[union-attr]
    other.close()
    inventory.close()


def test_journal_batch_writes_are_all_or_nothing(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "journal.sqlite"))
    ids = journal.intents(
        [
            (
                _job(str(i)),
                [f"n{i}"],
                f"/arch/run/{i}",
            )
            for i in range(3)
        ],
        7,
        NOW,
    )
    assert [r.state for r in journal.open_rows()] == ["intent"] * 3
    journal.advance_many("locked", NOW, [(ids[0], {}), (ids[1], {"nodes": ["m1"]}), (ids[2], {})])
    rows = journal.open_rows()
    assert [(r.state, r.nodes, r.tick) for r in rows] == [
        ("locked", ("n0",), 7),
        ("locked", ("m1",), 7),
        ("locked", ("n2",), 7),
    ]
    with pytest.raises(ValueError, match="unknown column"):
        journal.advance_many("running", NOW, [(ids[0], {"pid": 5}), (ids[1], {"bogus": 1})])
    assert [r.state for r in journal.open_rows()] == ["locked"] * 3  # the first row did not move
    journal.close()


def test_launch_many_starts_each_job_and_reports_a_failure_in_place(tmp_path: Path) -> None:
    runner = CommandRunner("sh -c 'echo {body[word]} > out.txt'")
    jobs = [_job(str(i), body={"word": f"w{i}"}) for i in range(6)]
    jobs[2] = _job("2", body={})  # the template needs body[word]: this launch fails alone
    calls: list[str] = []
    lock = threading.Lock()

    def after() -> None:
        with lock:
            calls.append(threading.current_thread().name)

    results = runner.launch_many(
        [(job, lab_nodes(1), str(tmp_path / job.job_id)) for job in jobs], after=after
    )
    assert isinstance(results[2], LaunchFailed) and "word" in str(results[2])
    handles = [r for r in results if isinstance(r, LaunchHandle)]
    assert [h.job_id for h in handles] == ["0", "1", "3", "4", "5"] and len(calls) == 5
    for handle in handles:
        wait_for(lambda h=handle: runner.poll(h) is not None, what=f"job {handle.job_id} to end")  # type: ignore[misc]
        assert runner.poll(handle) == 0 and process_gone(handle.pid)
        assert (Path(handle.archive_path) / "out.txt").read_text() == f"w{handle.job_id}\n"


def test_launch_many_of_a_job_prepared_while_its_earlier_attempt_runs_is_refused(
    tmp_path: Path,
) -> None:
    runner = CommandRunner("sleep 30")
    path = str(tmp_path / "7")
    (first,) = runner.launch_many([(_job("7"), lab_nodes(1), path)])
    assert isinstance(first, LaunchHandle)
    wait_for(lambda: read_pid(path) is not None, what="the wrapper's pid file")
    with pytest.raises(OptiallocError, match="still running"):
        runner.prepare(path)
    (second,) = runner.launch_many([(_job("7"), lab_nodes(1), path)])
    assert isinstance(second, LaunchFailed) and "still running" in str(second)
    runner.kill(first, 1.0)
    wait_for(lambda: runner.poll(first) is not None, what="the first attempt to end")


def test_lock_server_down_mid_batch_defers_the_rest_and_releases_their_claims() -> None:
    jobs = [_job("1"), _job("2"), _job("3"), _job("4")]
    d, queue, inventory, runner = _dispatcher(
        jobs, _plan(("1", ("n1",)), ("2", ("n2",)), ("3", ("n3",)), ("4", ("n4",)))
    )
    real_lock = inventory.lock

    def lock(names, description, locked_by=None):  # type: ignore[no-untyped-def]
        if names == ["n3"]:
            inventory.unavailable = True  # goes down while locking job 3
        return real_lock(names, description, locked_by)

    inventory.lock = lock  # type: ignore[method-assign]
    report = d.tick()
    assert report.started == ["1", "2"] and runner.launches == ["1", "2"]
    reasons = dict(report.failed)
    assert reasons["3"].startswith("lock refused") and reasons["4"].startswith("deferred")
    assert queue.state == {"1": "claimed", "2": "claimed", "3": "claimed", "4": "pending"}
    # job 3 still owes an unlock to the lock server; it is settled once it answers again
    inventory.unavailable = False
    d.tick()
    assert queue.state["3"] == "pending" and inventory.locks["n3"] is None
    assert {r.job_id for r in d.journal.open_rows()} == {"1", "2"}


def test_a_claim_refused_in_the_batch_does_not_stop_the_others() -> None:
    jobs = [_job("1"), _job("2"), _job("3")]
    d, queue, inventory, runner = _dispatcher(
        jobs, _plan(("1", ("n1",)), ("2", ("n2",)), ("3", ("n3",)))
    )
    real_claim = queue.claim

    def claim(job_id: str) -> bool:
        if job_id == "2":
            queue.state["2"] = "claimed"  # another dispatcher took it after our snapshot
        return real_claim(job_id)

    queue.claim = claim  # type: ignore[method-assign]
    report = d.tick()
    assert report.started == ["1", "3"]
    assert report.failed == [("2", "claim refused: job no longer pending")]
    assert inventory.locks["n2"] is None and runner.launches == ["1", "3"]
