"""Dispatcher logic with small in-test fakes of the ports (the real paths are in test_serve_*).

The fakes keep state in dicts so each test can inject one failure (a refused
lock, a runner that cannot start a job, a crash left in the journal) and
check that the dispatcher contains it to that one job.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from optialloc.dispatch.dispatcher import Dispatcher, DispatcherSettings
from optialloc.dispatch.journal import Journal
from optialloc.domain import Job, Node, Plan, SolverStats, Start
from optialloc.errors import BackendUnavailable, LockBusy
from optialloc.policy import default_policy
from optialloc.ports import BuriedJob, LaunchHandle, TubeStats
from optialloc.runners import LaunchFailed

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class FakeQueue:
    def __init__(self, jobs: Sequence[Job]) -> None:
        self.state = {j.job_id: "pending" for j in jobs}
        self.jobs = {j.job_id: j for j in jobs}
        self.reasons: dict[str, str] = {}

    def pending(self) -> list[Job]:
        return [self.jobs[i] for i, s in self.state.items() if s == "pending"]

    def claimed(self) -> list[Job]:
        return [self.jobs[i] for i, s in self.state.items() if s == "claimed"]

    def claim(self, job_id: str) -> bool:
        if self.state.get(job_id) != "pending":
            return False
        self.state[job_id] = "claimed"
        return True

    def release(self, job_id: str) -> None:
        if self.state.get(job_id) == "claimed":
            self.state[job_id] = "pending"

    def bury(self, job_id: str, reason: str) -> None:
        self.state[job_id] = "buried"
        self.reasons[job_id] = reason

    def delete(self, job_id: str) -> None:
        self.state[job_id] = "deleted"

    def paused_tubes(self) -> frozenset[str]:
        return frozenset()

    def buried(self) -> list[BuriedJob]:
        return []

    def stats(self) -> list[TubeStats]:
        return []


class FakeInventory:
    locked_by = "optialloc@test"

    def __init__(self, names: Sequence[str]) -> None:
        self.locks: dict[str, str | None] = dict.fromkeys(names)
        self.owners: dict[str, str] = {}  # node -> locked_by of its lock
        self.up = dict.fromkeys(names, True)
        self.refuse: set[str] = set()
        self.unavailable = False

    def nodes(self, machine_type: str | None = None) -> list[Node]:
        return [
            Node(
                n,
                "smithi",
                up=self.up[n],
                locked=d is not None,
                locked_by=self.owners.get(n, self.locked_by) if d else None,
                description=d,
            )
            for n, d in self.locks.items()
        ]

    def lock(
        self, names: Sequence[str], description: str, locked_by: str | None = None
    ) -> list[Node]:
        if self.unavailable:
            raise BackendUnavailable("lock server down")
        if any(n in self.refuse or self.locks[n] not in (None, description) for n in names):
            raise LockBusy(f"{','.join(names)} busy")
        for n in names:
            self.locks[n] = description
            self.owners[n] = locked_by or self.locked_by
        return []

    def unlock(
        self, names: Sequence[str], description: str, locked_by: str | None = None
    ) -> None:
        if self.unavailable:
            raise BackendUnavailable("lock server down")
        for n in names:
            if self.locks[n] == description and self.owners.get(n) == (locked_by or self.locked_by):
                self.locks[n] = None

    def set_up(self, names: Sequence[str], up: bool) -> None:
        for n in names:
            self.up[n] = up

    def held(self) -> list[Node]:
        return [n for n in self.nodes() if n.locked]


class FakeRunner:
    def __init__(self) -> None:
        self.running: dict[str, int | None] = {}
        self.fail: set[str] = set()
        self.launches: list[str] = []
        self.killed: list[str] = []

    def launch(self, job: Job, nodes: Sequence[Node], archive_path: str) -> LaunchHandle:
        if job.job_id in self.fail:
            raise LaunchFailed("no such command")
        self.launches.append(job.job_id)
        self.running[archive_path] = None
        return LaunchHandle(
            job.job_id, 1000 + len(self.launches), 1000 + len(self.launches), archive_path, T0
        )

    def poll(self, handle: LaunchHandle) -> int | None:
        return self.running.get(handle.archive_path, 137)

    def kill(self, handle: LaunchHandle, grace_s: float) -> None:
        self.killed.append(handle.job_id)
        self.running[handle.archive_path] = 143

    def adopt(self, job_id: str, archive_path: str) -> LaunchHandle | None:
        if archive_path not in self.running:
            return None
        return LaunchHandle(job_id, 99, 99, archive_path, T0)

    def abandon(self, archive_path: str) -> bool:
        return archive_path not in self.running

    def progress_at(self, handle: LaunchHandle) -> datetime | None:
        return None

    def end(self, job_id: str, status: int = 0) -> None:
        for path in self.running:
            if path.endswith("/" + job_id):
                self.running[path] = status


def _job(job_id: str, nodes: int = 1, **kw: object) -> Job:
    fields: dict[str, object] = dict(
        job_id=job_id,
        run="run",
        owner="o",
        priority=100,
        machine_types=("smithi",),
        nodes_needed=nodes,
        queued_at=T0,
    )
    fields.update(kw)
    return Job(**fields)  # type: ignore[arg-type]


def _plan(*starts: tuple[str, tuple[str, ...]]) -> Plan:
    return Plan(
        T0, tuple(Start(j, n) for j, n in starts), (), (), SolverStats("OPTIMAL", 0.0, 0.0, 0.001)
    )


def _dispatcher(
    jobs: Sequence[Job],
    plan: Plan | None = None,
    *,
    nodes: int = 4,
    violations: list[str] | None = None,
    **settings: object,
):
    queue = FakeQueue(jobs)
    inventory = FakeInventory([f"n{i}" for i in range(1, nodes + 1)])
    runner = FakeRunner()
    journal = Journal(":memory:")
    calls = {"solve": 0}

    def solve(snapshot, policy, explain=True):  # type: ignore[no-untyped-def]
        calls["solve"] += 1
        return plan if plan is not None and calls["solve"] == 1 else _plan()

    d = Dispatcher(
        queue=queue,
        inventory=inventory,
        runner=runner,
        clock=FakeClock(),
        policy=default_policy(),
        journal=journal,
        settings=DispatcherSettings(archive_base="/arch", **settings),  # type: ignore[arg-type]
        solve=solve,
        validate=lambda s, p, pl: list(violations or []),
    )
    return d, queue, inventory, runner


def test_lock_refused_for_one_job_releases_it_and_the_others_still_start() -> None:
    jobs = [_job("1"), _job("2"), _job("3")]
    d, queue, inventory, _runner = _dispatcher(
        jobs, _plan(("1", ("n1",)), ("2", ("n2",)), ("3", ("n3",)))
    )
    inventory.refuse = {"n2"}
    report = d.tick()
    assert report.started == ["1", "3"]
    assert report.failed[0][0] == "2" and "lock refused for n2" in report.failed[0][1]
    assert queue.state == {"1": "claimed", "2": "pending", "3": "claimed"}
    assert inventory.locks == {"n1": "/arch/run/1", "n2": None, "n3": "/arch/run/3", "n4": None}
    assert d.journal.rows_for("2")[-1].reason.startswith("lock refused")  # type: ignore[union-attr]


def test_runner_that_cannot_start_a_job_buries_it_and_unlocks_its_nodes() -> None:
    jobs = [_job("1", 2), _job("2")]
    d, queue, inventory, runner = _dispatcher(jobs, _plan(("1", ("n1", "n2")), ("2", ("n3",))))
    runner.fail = {"1"}
    report = d.tick()
    assert report.started == ["2"]
    assert queue.state["1"] == "buried" and "no such command" in queue.reasons["1"]
    assert inventory.locks["n1"] is None and inventory.locks["n2"] is None


def test_finished_job_is_deleted_from_the_queue_and_its_nodes_released() -> None:
    d, queue, inventory, runner = _dispatcher([_job("1", 2)], _plan(("1", ("n1", "n2"))))
    d.tick()
    assert queue.state["1"] == "claimed"  # stays claimed while it runs
    runner.end("1", 0)
    report = d.tick()
    assert report.finished == [("1", 0)]
    assert queue.state["1"] == "deleted"
    assert inventory.held() == []


def test_failed_job_marks_nodes_down_when_configured() -> None:
    d, queue, inventory, runner = _dispatcher(
        [_job("1", 2)], _plan(("1", ("n1", "n2"))), mark_down_on_failure=True
    )
    d.tick()
    runner.end("1", 1)
    d.tick()
    assert inventory.up["n1"] is False and inventory.up["n2"] is False
    assert inventory.held() == []
    assert queue.state["1"] == "deleted"


def test_rejected_plan_starts_nothing() -> None:
    d, queue, _inventory, runner = _dispatcher(
        [_job("1")], _plan(("1", ("n1",))), violations=["node n1 used twice"]
    )
    report = d.tick()
    assert report.rejected == ["node n1 used twice"] and report.started == []
    assert runner.launches == [] and queue.state["1"] == "pending"


def test_guard_refuses_busy_nodes_and_an_early_last_in_suite_job() -> None:
    jobs = [_job("1"), _job("2"), _job("9", 0, last_in_suite=True)]
    d, queue, _inventory, _runner = _dispatcher(
        jobs, _plan(("1", ("n1",)), ("2", ("n1",)), ("9", ()))
    )
    report = d.tick()
    assert report.started == ["1"]
    reasons = dict(report.failed)
    assert reasons["2"] == "node n1 is not free"
    assert reasons["9"].startswith("last_in_suite")
    assert queue.state["9"] == "pending"


def test_backend_outage_at_settle_is_retried_next_tick() -> None:
    d, queue, inventory, runner = _dispatcher([_job("1")], _plan(("1", ("n1",))))
    d.tick()
    runner.end("1", 0)
    inventory.unavailable = True
    d.tick()
    assert inventory.locks["n1"] is not None and queue.state["1"] == "claimed"
    assert d.journal.open_rows()[0].state == "done"
    inventory.unavailable = False
    d.tick()
    assert inventory.locks["n1"] is None and queue.state["1"] == "deleted"
    assert d.journal.open_rows() == []


def test_reconcile_undoes_unlaunched_rows_and_adopts_running_ones() -> None:
    jobs = [_job("1"), _job("2"), _job("3"), _job("4")]
    d, queue, inventory, runner = _dispatcher(jobs)
    j = d.journal
    # 1: crashed after claim+lock, before launch; 2: launched and running
    r1 = j.intent(jobs[0], ["n1"], "/arch/run/1", 1, T0)
    queue.claim("1")
    inventory.lock(["n1"], "/arch/run/1", "o")  # locked as the job's owner
    j.advance(r1, "locked", T0)
    r2 = j.intent(jobs[1], ["n2"], "/arch/run/2", 1, T0)
    queue.claim("2")
    inventory.lock(["n2"], "/arch/run/2", "o")
    j.advance(r2, "launching", T0)
    runner.running["/arch/run/2"] = None
    # 3: claimed with no journal row
    queue.claim("3")
    # n4: a lock a settled attempt of job 4 left (count mode: died before `locked`)
    r4 = j.intent(jobs[3], ["n3"], "/arch/run/4", 1, T0)
    j.advance(r4, "failed", T0, reason="x", node_action="none", disposition="none", settled=1)
    inventory.lock(["n4"], "/arch/run/4", "o")
    # n3: under the archive base, but no attempt of ours: someone else's, left alone
    inventory.lock(["n3"], "/arch/run/77", "scheduled_x@teuth")
    repairs = d.reconcile()
    assert len(repairs) == 4
    assert queue.state == {"1": "pending", "2": "claimed", "3": "pending", "4": "pending"}
    assert inventory.locks == {"n1": None, "n2": "/arch/run/2", "n3": "/arch/run/77", "n4": None}
    assert [h.job_id for h in d.handles()] == ["2"]
    assert j.get(r2).state == "running"  # type: ignore[union-attr]


def test_reconcile_of_a_launch_that_never_started_returns_the_job() -> None:
    d, queue, inventory, _runner = _dispatcher([_job("1")])
    r1 = d.journal.intent(_job("1"), ["n1"], "/arch/run/1", 1, T0)
    queue.claim("1")
    inventory.lock(["n1"], "/arch/run/1", "o")
    d.journal.advance(r1, "launching", T0)
    repairs = d.reconcile()
    assert "never started" in repairs[0]
    assert queue.state["1"] == "pending" and inventory.held() == []


def test_monitor_kills_at_the_limit_and_the_job_is_buried() -> None:
    d, queue, inventory, _runner = _dispatcher([_job("1")], _plan(("1", ("n1",))), max_job_time=60)
    d.tick()
    clock = d.clock
    assert isinstance(clock, FakeClock)
    clock.t = T0 + timedelta(seconds=59)
    assert d.tick().killing == []
    clock.t = T0 + timedelta(seconds=60)
    assert d.tick().killing == [("1", "max_job_time exceeded: ran 60 s, limit 60 s")]
    report = d.tick()
    assert report.failed and queue.state["1"] == "buried"
    assert "max_job_time exceeded" in queue.reasons["1"]
    assert inventory.held() == []


def test_waiting_reasons_are_logged_only_when_they_change(caplog: pytest.LogCaptureFixture) -> None:
    from optialloc.domain import Waiting, WaitReason

    waiting = (Waiting("1", 1, WaitReason.NOT_ENOUGH_NODES, "needs 9 smithi, 4 free"),)
    plan = replace(_plan(), waiting=waiting)
    d, *_ = _dispatcher([_job("1", 9)])
    d._solve = lambda s, p, explain=True: plan
    with caplog.at_level(logging.INFO, logger="optialloc.dispatch.dispatcher"):
        d.tick()
        d.tick()
    lines = [r.getMessage() for r in caplog.records if "waits" in r.getMessage()]
    assert lines == ["tick 1: job 1 waits: not_enough_nodes: needs 9 smithi, 4 free"]


def test_count_mode_lock_that_picks_other_nodes_is_recorded_and_used() -> None:
    d, _queue, inventory, runner = _dispatcher([_job("1", 2)], _plan(("1", ("n1", "n2"))))

    def lock_many(
        names: Sequence[str], description: str, locked_by: str | None = None
    ) -> list[Node]:
        picked = ["n3", "n4"]  # paddles' lock_many chooses its own free nodes
        for name in picked:
            inventory.locks[name] = description
            inventory.owners[name] = locked_by or inventory.locked_by
        return [Node(name, "smithi", locked=True, description=description) for name in picked]

    inventory.lock = lock_many  # type: ignore[method-assign]
    report = d.tick()
    assert report.started == ["1"]
    (row,) = d.journal.open_rows()
    assert row.nodes == ("n3", "n4")
    assert [job.nodes for job in d.running_jobs()] == [("n3", "n4")]
    runner.end("1", 0)
    d.tick()
    assert inventory.held() == []


def test_archive_path_follows_teuthology_and_never_leaves_the_base() -> None:
    from optialloc.dispatch.commit import archive_path_for

    assert archive_path_for("/arch", _job("7", run="teuthology-2026-11-20_20:00:03-rados")) == (
        "/arch/teuthology-2026-11-20_20:00:03-rados/7"
    )
    # a name that is not plain gets a readable prefix and a digest (issue 16, test_bad_jobs.py)
    assert re.fullmatch(
        r"/arch/\.\._\.\._etc-[0-9a-f]{16}/7", archive_path_for("/arch", _job("7", run="../../etc"))
    )
    assert archive_path_for("/arch", _job("7", run="")) == "/arch/unnamed-run/7"


def test_big_queue_is_explained_every_positions_every_s_and_decided_every_tick() -> None:
    """Above `explain_always_below` queued jobs, positions and reasons are worked out and
    stored at most every `positions_every_s`; starts are decided on every tick."""
    from optialloc.solver import solve as real_solve

    jobs = [_job(str(k)) for k in range(12)]
    d, _queue, _inventory, runner = _dispatcher(
        jobs, nodes=4, explain_always_below=5, positions_every_s=5.0
    )
    d._solve = real_solve
    d._validate = _real_validate
    clock = d.clock
    assert isinstance(clock, FakeClock)

    first = d.tick()
    assert first.plan is not None and first.plan.explained and len(first.started) == 4
    stored = d.journal.positions()
    assert len(stored) == 8 and {pos for pos, _, _ in stored.values()} == set(range(1, 9))

    runner.end(first.started[0], 0)  # a node frees up: the next tick starts a job
    clock.sleep(1)
    second = d.tick()
    assert second.plan is not None and not second.plan.explained and second.plan.waiting == ()
    assert len(second.started) == 1 and second.rejected == []
    assert d.journal.positions() == stored  # last explained plan's, at most 5 s old

    clock.sleep(5)
    third = d.tick()
    assert third.plan is not None and third.plan.explained
    assert len(d.journal.positions()) == 7  # one more job started since

    small, *_ = _dispatcher(jobs[:5], nodes=4, explain_always_below=5, positions_every_s=5.0)
    small._solve = real_solve
    small._validate = _real_validate
    assert small.tick().plan.explained  # type: ignore[union-attr]
    assert small.tick().plan.explained  # type: ignore[union-attr]  # small queue: every tick


def _real_validate(snapshot, policy, plan):  # type: ignore[no-untyped-def]
    from optialloc.check.validator import validate_plan

    return list(validate_plan(snapshot, policy, plan))
