"""Job status reports to paddles' /runs/<run>/jobs/ (a look-alike server): the direct reporter,
the factory (the outbox reporter `serve` uses; see test_report_outbox.py), the no-op reporter."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import free_port
from paddles_server import FakePaddles

from optialloc.config import Config
from optialloc.domain import Job
from optialloc.inventory import open_reporter
from optialloc.inventory.paddles_client import PaddlesClient
from optialloc.inventory.reporter import NullReporter, OutboxReporter, PaddlesReporter
from optialloc.ports import Reporter

RUN = "teuthology-2026-11-20_20:00:03-rados-main-distro-default-smithi"
BODY = {
    "name": RUN,
    "owner": "scheduled_me@host",
    "priority": 75,
    "machine_type": "smithi",
    "roles": [["mon.a", "osd.0"], ["client.0"]],
    "tasks": [{"install": None}],
    "description": "rados/basic/{clusters/fixed-2 tasks/rados_api}",
    "os_type": "ubuntu",
}


def job(job_id: str = "17") -> Job:
    return Job(
        job_id=job_id,
        run=RUN,
        owner="scheduled_me@host",
        priority=75,
        machine_types=("smithi",),
        nodes_needed=2,
        queued_at=datetime(2026, 11, 20, 20, 0, tzinfo=UTC),
        tube="smithi",
        os_type="ubuntu",
        description=BODY["description"],
        body=BODY,
    )


@pytest.fixture
def server() -> Iterator[FakePaddles]:
    with FakePaddles() as fake:
        yield fake


def direct(url: str) -> Reporter:
    return PaddlesReporter(PaddlesClient(url, setting="results_server", attempts=2, timeout=5.0))


def reporter(server: FakePaddles) -> Reporter:
    return direct(server.url)


def test_factory_picks_the_outbox_or_nothing(server: FakePaddles, tmp_path: Path) -> None:
    rep = open_reporter(Config(results_server=server.url, state_dir=str(tmp_path)))
    try:
        assert isinstance(rep, OutboxReporter)
        assert rep.outbox.path == str(tmp_path / "reports.sqlite")
    finally:
        rep.close()
    assert isinstance(open_reporter(Config()), NullReporter)


def test_queued_then_waiting_then_running_then_dead(server: FakePaddles) -> None:
    rep = reporter(server)
    rep.report(job(), "queued")
    stored = server.jobs[(RUN, "17")]
    assert stored["status"] == "queued"
    assert stored["roles"] == BODY["roles"] and stored["tasks"] == BODY["tasks"]
    assert (stored["owner"], stored["priority"], stored["machine_type"]) == (
        "scheduled_me@host",
        75,
        "smithi",
    )
    rep.report(job(), "waiting")
    targets = {"ubuntu@smithi001": "ssh-ed25519 KEY1", "ubuntu@smithi002": "ssh-ed25519 KEY2"}
    rep.report(job(), "running", targets=targets, pid=4242, archive_path="/archive/r/17")
    stored = server.jobs[(RUN, "17")]
    assert (stored["status"], stored["targets"], stored["pid"]) == ("running", targets, 4242)
    assert "started" in stored
    rep.report(job(), "dead", failure_reason="killed: no progress for 3600 s")
    stored = server.jobs[(RUN, "17")]
    assert (stored["status"], stored["failure_reason"]) == (
        "dead",
        "killed: no progress for 3600 s",
    )
    # the first report creates (POST), later ones update (POST answered 400, then PUT)
    methods = [m for m, _, _ in server.reports]
    assert methods == ["POST", "POST", "PUT", "POST", "PUT", "POST", "PUT"]
    assert server.reports[2][1] == f"/runs/{RUN}/jobs/17/"


def test_an_unknown_status_is_logged_not_sent(
    server: FakePaddles, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        reporter(server).report(job(), "finished")
    assert server.reports == []
    assert "'finished' is not one of" in caplog.text


def test_a_down_results_server_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    rep = direct(f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING):
        rep.report(job(), "running", targets={})
    assert "could not report job 17" in caplog.text
    assert "cannot reach paddles" in caplog.text and "results_server" in caplog.text


def test_an_html_error_page_is_logged_never_raised(
    server: FakePaddles, caplog: pytest.LogCaptureFixture
) -> None:
    rep = direct(server.url + "/wrong-prefix")
    with caplog.at_level(logging.WARNING):
        rep.report(job(), "queued")
    assert "HTML/text page instead of JSON" in caplog.text
    assert server.jobs == {}


def test_null_reporter_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="optialloc.inventory.reporter"):
        NullReporter().report(job(), "running", targets={"ubuntu@a": "k"})
    assert "job 17" in caplog.text and "running" in caplog.text
