"""Faults around a running `optialloc serve`: the dispatcher keeps going and loses nothing.

- beanstalkd killed and restarted mid-run (binlog), more jobs put afterwards;
- the lock server (a paddles look-alike over real HTTP) refusing locks, and
  unreachable for a while;
- a runner command that does not exist, and one that exits at once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import beanstalkc
import pytest
import yaml
from conftest import REPO
from inventory_support import fill_paddles
from paddles_server import FakePaddles
from serve_support import (
    assert_no_overlap,
    env_without_crash,
    read_records,
    record_command,
    run_serve,
    wait_for,
)

from optialloc.dispatch.journal import Journal
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.teuthology import dump_body

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, **values: object) -> Path:
    config = {
        "state_dir": str(tmp_path / "state"),
        "tick_seconds": 0.3,
        "locked_by": "optialloc@faults",
        "runner_command": record_command(tmp_path / "records.txt"),
        **values,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _body(
    i: int, nodes: int = 1, machine_type: str = "smithi", **extra: object
) -> dict[str, object]:
    return {
        "name": f"run-{i % 2}",
        "owner": "scheduled_me@x",
        "machine_type": machine_type,
        "priority": 100,
        "roles": [[f"osd.{k}"] for k in range(nodes)],
        "duration": "0.2",
        "os_type": "ubuntu",
        **extra,
    }


def _serve(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "optialloc", "--config", str(config), "serve", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env_without_crash(),
    )


def _check_once(tmp_path: Path, expected: int) -> None:
    records = read_records(tmp_path / "records.txt")
    ids = sorted(r[0] for r in records)
    assert len(ids) == expected and len(set(ids)) == expected, ids
    assert_no_overlap(records)


@pytest.mark.beanstalkd
def test_beanstalkd_restarted_mid_run(tmp_path: Path, beanstalkd) -> None:
    config = _config(tmp_path, queue_backend="beanstalk", queue_port=beanstalkd.port)

    def put(first: int, count: int) -> None:
        conn = beanstalkc.Connection("127.0.0.1", beanstalkd.port, parse_yaml=yaml.safe_load)
        conn.use("smithi")
        for i in range(first, first + count):
            conn.put(dump_body(_body(i, 1 + i % 2)), priority=100, ttr=86400)
        conn.close()

    put(0, 8)
    proc = _serve(config)
    try:
        wait_for(lambda: len(read_records(tmp_path / "records.txt")) >= 2, what="first jobs done")
        beanstalkd.restart(kill=True)
        put(100, 6)
        wait_for(
            lambda: len(read_records(tmp_path / "records.txt")) >= 14,
            timeout=90,
            what="all 14 jobs done",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-3000:]
    _check_once(tmp_path, 14)
    conn = beanstalkc.Connection("127.0.0.1", beanstalkd.port, parse_yaml=yaml.safe_load)
    for tube in conn.tubes():  # beanstalkd drops a tube once it is empty and unused
        assert conn.stats_tube(tube)["current-jobs-ready"] == 0
    conn.close()


def _queue_jobs(tmp_path: Path, count: int) -> None:
    (tmp_path / "state").mkdir(exist_ok=True)
    queue = EmbeddedQueue(str(tmp_path / "state" / "queue.sqlite"))
    for i in range(count):
        queue.put("smithi", dump_body(_body(i, 1 + i % 2)), 100)
    queue.close()


@pytest.mark.parametrize("fault", ["refusing", "unreachable"])
def test_lock_server_refusing_or_unreachable_for_a_while(tmp_path: Path, fault: str) -> None:
    with FakePaddles() as paddles:
        fill_paddles(paddles)
        if fault == "refusing":
            paddles.busy_lock_many = 4  # the next 4 lock_many calls answer 403
        else:
            paddles.stall_after_locks = 2  # then drop every request until unstalled

            def unstall_later() -> None:  # counted from the stall, not from a slow start-up
                wait_for(lambda: paddles._stalled, timeout=60, what="the outage")
                time.sleep(4.0)  # past the client's retries
                paddles.unstall()

            threading.Thread(target=unstall_later, daemon=True).start()
        config = _config(
            tmp_path,
            lock_server=paddles.url,
            results_server=paddles.url,
            lock_many=fault == "refusing",
        )
        _queue_jobs(tmp_path, 10)
        proc = _serve(config, "--exit-on-empty-queue")
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-3000:]
        _check_once(tmp_path, 10)
        assert paddles.locked_nodes() == {}, "a lock was left behind"
        statuses = {job_id: job.get("status") for (_run, job_id), job in paddles.jobs.items()}
        assert len(statuses) == 10 and set(statuses.values()) == {"pass"}, statuses
    expected_line = "lock refused" if fault == "refusing" else "cannot reach paddles"
    assert expected_line in stderr


def test_runner_command_missing_or_exiting_at_once(tmp_path: Path) -> None:
    config = _config(tmp_path, runner_command="{body[prog]} {job_id}")
    (tmp_path / "state").mkdir()
    queue = EmbeddedQueue(str(tmp_path / "state" / "queue.sqlite"))
    ids = {
        prog: queue.put("smithi", dump_body(_body(i, prog=prog)), 100)
        for i, prog in enumerate(("no-such-program-xyz", "false", "true"))
    }
    queue.close()
    proc = run_serve(config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    queue = EmbeddedQueue(str(tmp_path / "state" / "queue.sqlite"))
    buried = {b.job_id: b.reason for b in queue.buried()}
    assert list(buried) == [ids["no-such-program-xyz"]]
    assert "'no-such-program-xyz' not found" in buried[ids["no-such-program-xyz"]]
    assert list(queue.pending()) == [] and list(queue.claimed()) == []
    queue.close()
    journal = Journal(str(tmp_path / "state" / "journal.sqlite"))
    last = {job_id: journal.rows_for(job_id)[-1] for job_id in ids.values()}
    assert (last[ids["false"]].state, last[ids["false"]].exit_status) == ("done", 1)
    assert (last[ids["true"]].state, last[ids["true"]].exit_status) == ("done", 0)
    assert journal.open_rows() == []
    journal.close()
    # `optialloc queue buried` shows the reason
    shown = subprocess.run(
        [sys.executable, "-m", "optialloc", "--config", str(config), "queue", "buried"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert "no-such-program-xyz" in shown.stdout, shown.stdout + shown.stderr
