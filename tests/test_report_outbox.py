"""The report outbox against the paddles look-alike: outages, order, duplicates, kill -9.

Every test compares what the results server ends with to what it would have
had without the outage or crash (a second look-alike that never went away).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, free_port
from paddles_server import FakePaddles
from serve_support import scheduled_job, wait_for

from optialloc.domain import Job
from optialloc.inventory.outbox import Outbox
from optialloc.inventory.paddles_client import PaddlesClient
from optialloc.inventory.reporter import OutboxReporter

RUN = "teuthology-2026-12-01_20:00:03-rados-main-distro-default-smithi"
# server-side stamps, which differ between two servers by nature
STAMPS = ("posted", "updated")


def job(i: int) -> Job:
    return scheduled_job(i, job_id=str(100 + i), priority=75, nodes=2)


def life(rep: OutboxReporter, i: int) -> None:
    """One job's reports from queued to its end, as serve writes them."""
    started = datetime(2026, 12, 1, 21, tzinfo=UTC) + timedelta(seconds=i)
    rep.report(job(i), "queued")
    rep.report(job(i), "waiting")
    rep.report(
        job(i),
        "running",
        targets={f"ubuntu@smithi{i:03d}": f"ssh-ed25519 K{i}"},
        archive_path=f"/a/{RUN}/{100 + i}",
        pid=4000 + i,
        started=started.isoformat(),
    )
    if i % 3 == 0:
        rep.report(job(i), "dead", failure_reason="killed by the monitor: no progress")
    else:
        rep.report(job(i), "pass" if i % 3 == 1 else "fail", exit_status=i % 3 - 1)


def reporter(url: str, path: Path) -> OutboxReporter:
    client = PaddlesClient(url, setting="results_server", attempts=1, timeout=2.0, cooldown_s=0.0)
    return OutboxReporter(client, str(path))


def records(server: FakePaddles) -> dict[tuple[str, str], dict[str, Any]]:
    return {k: {f: v for f, v in j.items() if f not in STAMPS} for k, j in server.jobs.items()}


@pytest.fixture
def twin() -> Iterator[FakePaddles]:
    """The server that never goes away: the record each job should end with."""
    with FakePaddles() as fake:
        yield fake


def expected(twin: FakePaddles, tmp_path: Path, jobs: range) -> dict[tuple[str, str], Any]:
    rep = reporter(twin.url, tmp_path / "twin.sqlite")
    for i in jobs:
        life(rep, i)
    assert rep.close(drain_s=30) == 0
    return records(twin)


def test_an_outage_delays_reports_and_the_records_end_the_same(
    twin: FakePaddles, tmp_path: Path
) -> None:
    want = expected(twin, tmp_path, range(12))
    server = FakePaddles().start()
    try:
        server.stop()  # down before the first report
        rep = reporter(server.url, tmp_path / "reports.sqlite")
        began = time.monotonic()
        for i in range(12):
            life(rep, i)
        writing_s = time.monotonic() - began
        assert rep.pending() == 48  # all kept, none lost
        server.restart()
        wait_for(lambda: rep.pending() == 0, 60, "outbox delivered after the outage")
        assert rep.close(drain_s=5) == 0
        assert records(server) == want
        statuses = {j["status"] for j in server.jobs.values()}
        assert statuses == {"pass", "fail", "dead"}
        assert all(
            j["success"] is (j["status"] == "pass") and j["started"] and j["targets"]
            for j in server.jobs.values()
        )
        # in order per job: each job's reports arrived queued, waiting, running, end
        for i in range(12):
            seen = [b["status"] for _, _, b in server.reports if b.get("job_id") == str(100 + i)]
            walk = [s for k, s in enumerate(seen) if k == 0 or s != seen[k - 1]]  # POST+PUT: one
            end = "dead" if i % 3 == 0 else ("pass" if i % 3 == 1 else "fail")
            assert walk == ["queued", "waiting", "running", end]
        assert writing_s < 30  # hang guard only: writing never waits for the server
    finally:
        server.stop()


def test_a_record_teuthology_schedule_created_is_updated_never_duplicated(
    tmp_path: Path,
) -> None:
    with FakePaddles() as server:
        # teuthology-schedule with a results server: put, then POST {job_id: jid, status: queued}
        import httpx

        doc = dict(job(1).body, job_id="101", status="queued")
        assert httpx.post(f"{server.url}/runs/{RUN}/jobs/", json=doc).status_code == 200
        rep = reporter(server.url, tmp_path / "reports.sqlite")
        life(rep, 1)
        assert rep.close(drain_s=30) == 0
        assert list(server.jobs) == [(RUN, "101")]
        assert server.jobs[(RUN, "101")]["status"] == "pass"
        ours = [(m, b["status"]) for m, _, b in server.reports[1:]]
        assert ours[0] == ("POST", "queued") and ours[1] == ("PUT", "queued")
        assert [s for m, s in ours if m == "PUT"] == ["queued", "waiting", "running", "pass"]


def test_identical_reports_are_written_once_and_remembered_across_restarts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reports.sqlite"
    outbox = Outbox(str(path))
    doc = {"job_id": "7", "name": RUN, "status": "queued"}
    assert outbox.add_many([("7", RUN, "queued", doc)]) == 1
    assert outbox.add_many([("7", RUN, "queued", doc)]) == 0
    outbox.close()
    again = Outbox(str(path))
    assert again.last_status("7") == "queued"
    assert again.add_many([("7", RUN, "queued", doc)]) == 0
    assert again.add_many([("7", RUN, "running", dict(doc, status="running"))]) == 1
    assert [r.status for r in again.due()] == ["queued"]  # one at a time per job, oldest first
    assert again.size() == 2
    again.close()


def test_a_refused_report_is_dropped_and_the_others_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakePaddles() as server:
        rep = reporter(server.url, tmp_path / "reports.sqlite")
        bad = Job(
            job_id="",
            run=RUN,
            owner="o",
            priority=1,
            machine_types=("smithi",),
            nodes_needed=1,
            queued_at=datetime(2026, 12, 1, tzinfo=UTC),
        )
        rep.report(bad, "queued")  # paddles: 400 job_id is required
        life(rep, 2)
        assert rep.close(drain_s=30) == 0
        assert server.jobs[(RUN, "102")]["status"] == "fail"
        assert "refused" in caplog.text and "job_id is required" in caplog.text


CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_report_outbox import life, reporter
    rep = reporter({url!r}, {path!r})
    for i in range(6):
        life(rep, i)
    print("written", flush=True)
    time.sleep(60)
    """
)


def test_kill_9_between_writing_and_delivering_then_restart_delivers_everything(
    twin: FakePaddles, tmp_path: Path
) -> None:
    want = expected(twin, tmp_path, range(6))
    port = free_port()
    path = tmp_path / "reports.sqlite"
    code = CHILD.format(tests=str(REPO / "tests"), url=f"http://127.0.0.1:{port}", path=str(path))
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
    finally:
        child.kill()  # SIGKILL: the reports are in the outbox, none delivered (server down)
        child.wait(timeout=10)
    with FakePaddles(port=port) as server:
        rep = reporter(server.url, path)
        wait_for(lambda: rep.pending() == 0, 60, "outbox delivered after the restart")
        assert rep.close(drain_s=5) == 0
        assert records(server) == want


def test_a_bookkeeping_job_record_is_removed_when_it_starts_as_teuthology_does(
    tmp_path: Path,
) -> None:
    with FakePaddles() as server:
        rep = reporter(server.url, tmp_path / "reports.sqlite")
        last = scheduled_job(5, job_id="105", nodes=0, last_in_suite=True)
        rep.report(last, "queued")
        assert rep.sender.drain(30) == 0 and (RUN, "105") in server.jobs
        rep.report(last, "running", pid=1, targets={})
        rep.report(last, "pass", exit_status=0)  # not sent: the record is gone for good
        rep.report(job(6), "queued")
        assert rep.close(drain_s=30) == 0
        assert (RUN, "105") not in server.jobs and (RUN, "106") in server.jobs
        assert [m for m, p, _ in server.reports if p.endswith("/105/")] == ["DELETE"]
