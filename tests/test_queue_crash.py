"""Crash tests: `kill -9` the process holding jobs at every step, restart beanstalkd mid-run.

Afterwards every job put is in the store exactly once (pending, claimed,
buried or deleted) and beanstalkd holds none: nothing lost, nothing doubled.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from queue_support import body, marker_of, raw_put, server_counts

from optialloc.queue.beanstalk import BeanstalkQueue
from optialloc.queue.store import QueueStore

pytestmark = [pytest.mark.slow, pytest.mark.beanstalkd]

CHILD = Path(__file__).with_name("queue_crash_child.py")
REPO = Path(__file__).resolve().parent.parent


def run_child(step: str, store: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), step, str(store), str(port)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def put_jobs(port: int, count: int, prefix: str = "j") -> list[str]:
    names = []
    for i in range(count):
        tube = ("smithi", "mira", "multi")[i % 3]
        mtype = "smithi,mira" if tube == "multi" else tube
        raw_put(
            port, tube, body(f"{prefix}{i}", machine_type=mtype, priority=100 + i % 7), 100 + i % 7
        )
        names.append(f"{prefix}{i}")
    return names


def stored_markers(store: Path) -> collections.Counter[str]:
    """Every job the store has ever taken in, any state (deleted rows are kept)."""
    db = QueueStore(str(store))
    try:
        rows = db.rows(("pending", "claimed", "buried", "deleted"))
    finally:
        db.close()
    return collections.Counter(marker_of(yaml.safe_load(r.body)["description"]) for r in rows)


def account(tmp_path: Path, port: int, store: Path, expected: list[str]) -> None:
    """A fresh adapter finishes the ingest; then each job is stored exactly once."""
    queue = BeanstalkQueue(str(store), "127.0.0.1", port)
    queue.pending()
    queue.close()
    counts = stored_markers(store)
    assert sorted(counts) == sorted(expected), "a job was lost or invented"
    assert [m for m, n in counts.items() if n > 1] == [], "a job was stored twice"
    assert server_counts(port) == {"ready": 0, "reserved": 0, "buried": 0, "delayed": 0}


@pytest.mark.parametrize("step", ["reserve", "insert", "commit", "delete", "confirm", "claim"])
def test_kill_9_at_each_step_loses_and_doubles_nothing(
    beanstalkd, tmp_path: Path, step: str
) -> None:
    store = tmp_path / "store.sqlite"
    names = put_jobs(beanstalkd.port, 100)
    result = run_child(step, store, beanstalkd.port)
    assert result.returncode == -signal.SIGKILL, result.stderr
    account(tmp_path, beanstalkd.port, store, names)
    if step == "claim":
        queue = BeanstalkQueue(str(store), "127.0.0.1", beanstalkd.port)
        assert len(queue.claimed()) == 50  # claims survive their claimer
        assert len(queue.pending()) == 50
        queue.close()


def test_two_crashes_in_a_row_then_clean_run(beanstalkd, tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    names = put_jobs(beanstalkd.port, 90)
    assert run_child("commit", store, beanstalkd.port).returncode == -signal.SIGKILL
    names += put_jobs(beanstalkd.port, 30, prefix="k")
    assert run_child("delete", store, beanstalkd.port).returncode == -signal.SIGKILL
    done = run_child("none", store, beanstalkd.port)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == 120
    account(tmp_path, beanstalkd.port, store, names)


def test_external_kill_9_and_beanstalkd_restart_mid_run(beanstalkd, tmp_path: Path) -> None:
    """A dispatcher-like loop (ingest, claim, delete) killed while beanstalkd restarts."""
    store = tmp_path / "store.sqlite"
    loop = (
        "import sys\n"
        "from optialloc.queue.beanstalk import BeanstalkQueue\n"
        "q = BeanstalkQueue(sys.argv[1], '127.0.0.1', int(sys.argv[2]), retry_s=30)\n"
        "while True:\n"
        "    for job in q.pending()[:7]:\n"
        "        if q.claim(job.job_id):\n"
        "            q.delete(job.job_id)\n"
        # One write per line: print() writes its pieces separately when PYTHONUNBUFFERED is
        # set, and a kill between them would leave a line without its job id.
        "            sys.stdout.write(f'launched {job.job_id}\\n')\n"
        "            sys.stdout.flush()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", loop, str(store), str(beanstalkd.port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    launched: list[str] = []
    reader = threading.Thread(target=lambda: launched.extend(child.stdout or []), daemon=True)
    reader.start()
    try:
        names = put_jobs(beanstalkd.port, 150, prefix="a")
        beanstalkd.restart(kill=True)
        names += put_jobs(beanstalkd.port, 150, prefix="b")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        reader.join(timeout=10)
    assert child.returncode == -signal.SIGKILL
    account(tmp_path, beanstalkd.port, store, names)
    # Everything the loop reported launched is deleted in the store, exactly once.
    launched_ids = [line.split()[1] for line in launched if line.startswith("launched")]
    assert len(launched_ids) == len(set(launched_ids))
    db = QueueStore(str(store))
    try:
        deleted = {r.job_id for r in db.rows(("deleted",))}
    finally:
        db.close()
    assert set(launched_ids) <= deleted
