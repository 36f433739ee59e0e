"""The beanstalkd adapter on a real beanstalkd: teuthology bodies, restarts, dropped links."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import _wait_listening, free_port
from queue_support import (
    COMPAT_BODY,
    body,
    marker_of,
    open_beanstalk,
    proxy_to,
    raw,
    raw_put,
    server_counts,
)

from optialloc.errors import BackendUnavailable
from optialloc.queue.beanstalk import BeanstalkQueue

pytestmark = pytest.mark.beanstalkd


def test_teuthology_body_put_raw_comes_out_unchanged(beanstalkd, tmp_path: Path) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    jid = raw_put(beanstalkd.port, "smithi", COMPAT_BODY, priority=75)
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    [job] = queue.pending()
    assert job.job_id == str(jid)  # teuthology's job id is the beanstalk id
    assert (job.tube, job.priority, job.nodes_needed) == ("smithi", 75, 2)
    assert dict(job.body) == yaml.safe_load(COMPAT_BODY)
    assert job.run == "optialloc-compat-test" and job.owner == "scheduled_optialloc@test"
    assert (job.os_type, job.os_version) == ("ubuntu", "22.04")
    assert before <= job.queued_at <= datetime.now(UTC)
    # The stored text is byte for byte what teuthology put.
    assert queue.store.row(str(jid)).body == COMPAT_BODY  # type: ignore[union-attr]
    # Moved, not copied: beanstalkd holds nothing any more.
    assert server_counts(beanstalkd.port) == {"ready": 0, "reserved": 0, "buried": 0, "delayed": 0}
    queue.close()


def test_beanstalk_priority_is_the_queue_priority(beanstalkd, tmp_path: Path) -> None:
    # The beanstalk priority wins over the body's (teuthology-queue can change it in beanstalkd).
    raw_put(beanstalkd.port, "smithi", body("a", priority=1000), priority=20)
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    [job] = queue.pending()
    assert job.priority == 20
    queue.close()


def test_serves_every_tube_or_only_the_configured_ones(beanstalkd, tmp_path: Path) -> None:
    for tube in ("smithi", "mira", "multi"):
        raw_put(
            beanstalkd.port,
            tube,
            body(tube, machine_type="smithi,mira" if tube == "multi" else tube),
            priority=100,
        )
    only = BeanstalkQueue(
        str(tmp_path / "only.sqlite"), "127.0.0.1", beanstalkd.port, tubes=["mira"]
    )
    assert [marker_of(j.description) for j in only.pending()] == ["mira"]
    assert server_counts(beanstalkd.port)["ready"] == 2
    every = open_beanstalk(tmp_path, beanstalkd.port)
    assert sorted(marker_of(j.description) for j in every.pending()) == ["multi", "smithi"]
    only.close()
    every.close()


def test_pause_set_by_teuthology_queue_is_honoured(beanstalkd, tmp_path: Path) -> None:
    raw_put(beanstalkd.port, "smithi", body("p"), priority=100)
    conn = raw(beanstalkd.port)
    conn.pause_tube("smithi", 600)  # what `teuthology-queue -p 600 -m smithi` does
    conn.close()
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    assert "smithi" in queue.paused_tubes()
    [smithi] = [s for s in queue.stats() if s.tube == "smithi"]
    # The job cannot be reserved while beanstalkd pauses its tube, but it is counted.
    assert smithi.paused and smithi.ready == 1
    queue.resume("smithi")
    assert [marker_of(j.description) for j in queue.pending()] == ["p"]
    queue.close()


def test_pause_reaches_beanstalkd(beanstalkd, tmp_path: Path) -> None:
    raw_put(beanstalkd.port, "smithi", body("p"), priority=100)
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    queue.pause("smithi", 300)
    conn = raw(beanstalkd.port)
    assert int(conn.stats_tube("smithi")["pause-time-left"]) > 0
    conn.close()
    queue.close()


def test_restart_with_binlog_mid_run_loses_nothing(beanstalkd, tmp_path: Path) -> None:
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    for i in range(30):
        raw_put(beanstalkd.port, "smithi", body(f"a{i}"), priority=100)
    assert len(queue.pending()) == 30
    queue.claim(queue.pending()[0].job_id)
    for i in range(30):
        raw_put(beanstalkd.port, "mira", body(f"b{i}", machine_type="mira"), priority=100)
    beanstalkd.restart(kill=True)  # kill -9; the binlog keeps the 30 not yet ingested
    jobs = list(queue.pending()) + list(queue.claimed())
    names = sorted(marker_of(j.description) for j in jobs)
    assert names == sorted([f"a{i}" for i in range(30)] + [f"b{i}" for i in range(30)])
    assert server_counts(beanstalkd.port)["ready"] == 0
    queue.close()


def test_restart_without_binlog_reuses_ids_but_keeps_jobs_apart(beanstalkd, tmp_path: Path) -> None:
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    first = [raw_put(beanstalkd.port, "smithi", body(f"old{i}"), priority=100) for i in range(3)]
    assert len(queue.pending()) == 3
    beanstalkd.stop(kill=True)
    beanstalkd.binlog_dir = tmp_path / "empty-binlog"
    beanstalkd.binlog_dir.mkdir()
    beanstalkd.start()
    second = [raw_put(beanstalkd.port, "smithi", body(f"new{i}"), priority=100) for i in range(3)]
    assert second == first  # beanstalkd starts counting again
    jobs = queue.pending()
    assert sorted(marker_of(j.description) for j in jobs) == sorted(
        [f"old{i}" for i in range(3)] + [f"new{i}" for i in range(3)]
    )
    assert len({j.job_id for j in jobs}) == 6
    queue.close()


def test_outage_is_logged_once_and_raises_with_the_fix(beanstalkd, tmp_path: Path, caplog) -> None:
    queue = open_beanstalk(tmp_path, beanstalkd.port, retry_s=0.5)
    raw_put(beanstalkd.port, "smithi", body("x"), priority=100)
    assert len(queue.pending()) == 1
    beanstalkd.stop(kill=True)
    caplog.set_level(logging.WARNING, logger="optialloc.queue.beanstalk")
    for _ in range(3):
        with pytest.raises(BackendUnavailable) as excinfo:
            queue.pending()
    message = str(excinfo.value)
    assert f"cannot reach beanstalkd at 127.0.0.1:{beanstalkd.port}" in message
    assert "start beanstalkd or set queue_host/queue_port" in message
    outage_lines = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage_lines) == 1
    beanstalkd.start()
    raw_put(beanstalkd.port, "smithi", body("y"), priority=100)
    assert sorted(marker_of(j.description) for j in queue.pending()) == ["x", "y"]
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    queue.close()


def test_dropped_connection_reconnects_transparently(beanstalkd, tmp_path: Path) -> None:
    with proxy_to(beanstalkd.port) as proxy:
        queue = open_beanstalk(tmp_path, proxy.port)
        raw_put(beanstalkd.port, "smithi", body("before"), priority=100)
        assert len(queue.pending()) == 1
        proxy.cut()
        raw_put(beanstalkd.port, "smithi", body("after"), priority=100)
        assert sorted(marker_of(j.description) for j in queue.pending()) == ["after", "before"]
        proxy.cut()
        job_id = queue.put("smithi", body("put-after-cut"), 100)
        assert queue.get(job_id) is not None
        queue.close()


def test_queue_age_comes_from_beanstalkd(beanstalkd, tmp_path: Path) -> None:
    raw_put(beanstalkd.port, "smithi", body("aged"), priority=100)
    time.sleep(1.1)  # beanstalkd reports age in whole seconds
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    [job] = queue.pending()
    assert datetime.now(UTC) - job.queued_at >= timedelta(seconds=1)
    queue.close()


def test_non_utf8_body_is_buried_not_dropped(beanstalkd, tmp_path: Path) -> None:
    conn = raw(beanstalkd.port)
    conn.use("smithi")
    conn.put(b"name: \xff\xfe broken\n", priority=1)
    conn.close()
    raw_put(beanstalkd.port, "smithi", body("good"), priority=100)
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    assert [marker_of(j.description) for j in queue.pending()] == ["good"]
    [buried] = queue.buried()
    assert buried.reason.startswith("body: not UTF-8")
    queue.close()


def test_dispatcher_mode_serves_stored_jobs_through_an_outage(
    beanstalkd, tmp_path: Path, caplog
) -> None:
    queue = BeanstalkQueue(
        str(tmp_path / "d.sqlite"), "127.0.0.1", beanstalkd.port, retry_s=0.5, tolerate_outage=True
    )
    for i in range(3):
        raw_put(beanstalkd.port, "smithi", body(f"t{i}"), priority=100)
    assert len(queue.pending()) == 3
    beanstalkd.stop(kill=True)
    caplog.set_level(logging.WARNING, logger="optialloc.queue.beanstalk")
    for _ in range(3):  # ticks go on with what the store holds
        jobs = queue.pending()
        assert [marker_of(j.description) for j in jobs] == ["t0", "t1", "t2"]
    assert queue.claim(jobs[0].job_id)
    queue.delete(jobs[0].job_id)
    assert [s.ready for s in queue.stats() if s.tube == "smithi"] == [2]
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    with pytest.raises(BackendUnavailable):  # a put has nowhere to go: that still fails
        queue.put("smithi", body("lost?"), 100)
    beanstalkd.start()
    raw_put(beanstalkd.port, "smithi", body("t3"), priority=100)
    assert [marker_of(j.description) for j in queue.pending()] == ["t1", "t2", "t3"]
    queue.close()


def test_huge_body_from_a_big_beanstalkd_is_buried_with_reason(tmp_path: Path) -> None:
    """With `-z` raised, beanstalkd takes bodies over optialloc's 1 MiB limit: buried, not lost."""
    binary = shutil.which("beanstalkd")
    if binary is None:
        pytest.fail("beanstalkd is required: install it (apt-get install beanstalkd)")
    port = free_port()
    server = subprocess.Popen(
        [binary, "-l", "127.0.0.1", "-p", str(port), "-z", str(4 * 1024 * 1024)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port)
        huge = body("huge") + "padding: " + "x" * (2 * 1024 * 1024) + "\n"
        huge_id = raw_put(port, "smithi", huge, priority=1)
        raw_put(port, "smithi", body("next"), priority=100)
        queue = open_beanstalk(tmp_path, port)
        assert [marker_of(j.description) for j in queue.pending()] == ["next"]
        [buried] = queue.buried()
        assert buried.job_id == str(huge_id)
        assert buried.reason.startswith("body: ") and "limit" in buried.reason
        assert buried.body == huge
        queue.close()
    finally:
        server.kill()
        server.wait()
