"""`optialloc serve` end to end: real beanstalkd, embedded inventory, command runner, subprocesses.

Jobs are put with `optialloc schedule` and as raw teuthology bodies across
several tubes; each job appends `<job_id> <nodes> <start> <end>` to a shared
file. Checked from those records: every job ran exactly once, no node served
two jobs at once; and afterwards no lock is held and every tube is empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import beanstalkc
import pytest
import yaml
from conftest import FIXTURES, REPO
from serve_support import assert_no_overlap, read_records, record_command

from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.queue.store import QueueStore

pytestmark = pytest.mark.beanstalkd


def write_config(tmp_path: Path, port: int, **extra: object) -> Path:
    config = {
        "queue_backend": "beanstalk",
        "queue_host": "127.0.0.1",
        "queue_port": port,
        "state_dir": str(tmp_path / "state"),
        "tick_seconds": 0.5,
        "runner_command": record_command(tmp_path / "records.txt"),
        "locked_by": "optialloc@e2e",
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def optialloc(
    config: Path,
    *args: str,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "optialloc", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )
    if check:
        assert proc.returncode == 0, f"optialloc {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    return proc


def schedule_jobs(tmp_path: Path, config: Path) -> int:
    """Put jobs with `optialloc schedule` in the smithi, mira and multi tubes; returns how many."""
    count = 0
    for nodes, machine_type, priority, n, owner in [
        (1, "smithi", 100, 6, "scheduled_alice@x"),
        (3, "smithi", 1000, 3, "scheduled_bob@x"),
        (2, "mira", 75, 3, "scheduled_carol@x"),
        (2, "smithi,mira", 200, 3, "scheduled_bob@x"),
    ]:
        job = tmp_path / f"job-{nodes}-{machine_type}.yaml"
        job.write_text(
            yaml.safe_dump(
                {
                    "roles": [[f"osd.{i}"] for i in range(nodes)],
                    "duration": "0.2",
                    "tasks": [{"install": None}],
                }
            )
        )
        optialloc(
            config,
            "schedule",
            str(job),
            "--name",
            f"run-{machine_type}-{nodes}",
            "--machine-type",
            machine_type,
            "--priority",
            str(priority),
            "-N",
            str(n),
            "--owner",
            owner,
        )
        count += n
    return count


def put_raw(port: int) -> int:
    """Raw bodies exactly as teuthology-schedule puts them (the compat fixture), in two tubes."""
    body = yaml.safe_load((FIXTURES / "bodies" / "teuthology-compat.yaml").read_text())
    conn = beanstalkc.Connection("127.0.0.1", port, parse_yaml=yaml.safe_load)
    count = 0
    for tube, machine_type, n in (("smithi", "smithi", 3), ("gibba", "gibba", 2)):
        conn.use(tube)
        for i in range(n):
            one = dict(
                body,
                machine_type=machine_type,
                tube=tube,
                duration="0.1",
                name=f"raw-{tube}",
                os_version=body["os_version"] if tube == "smithi" else "22.04",
            )
            if tube == "gibba":
                one["roles"] = [["mon.a"]]
                one.pop("arch", None)
            conn.put(yaml.safe_dump(one), priority=one["priority"] + i, ttr=86400)
            count += 1
    conn.close()
    return count


def assert_lab_clean(tmp_path: Path, port: int) -> None:
    state = tmp_path / "state"
    inventory = EmbeddedInventory(str(state / "inventory.sqlite"), "optialloc@e2e")
    assert [n.name for n in inventory.nodes() if n.locked] == [], "a lock was left behind"
    inventory.close()
    conn = beanstalkc.Connection("127.0.0.1", port, parse_yaml=yaml.safe_load)
    for tube in conn.tubes():
        stats = conn.stats_tube(tube)
        left = {
            k: stats[k]
            for k in ("current-jobs-ready", "current-jobs-reserved", "current-jobs-buried")
        }
        assert set(left.values()) == {0}, f"tube {tube} not empty: {left}"
    conn.close()
    stores = [p for p in os.listdir(state) if p.startswith("queue-beanstalk-")]
    store = QueueStore(str(state / stores[0]))
    counts = store.counts()
    assert {state for (_tube, state) in counts if counts[(_tube, state)]} <= {"deleted"}, counts
    store.close()


def test_jobs_from_schedule_and_raw_bodies_all_run_once_without_overlap(
    tmp_path: Path, beanstalkd
) -> None:
    config = write_config(tmp_path, beanstalkd.port)
    expected = schedule_jobs(tmp_path, config) + put_raw(beanstalkd.port)
    proc = optialloc(config, "serve", "--exit-on-empty-queue", timeout=180)
    records = read_records(tmp_path / "records.txt")
    ids = [r[0] for r in records]
    assert len(ids) == expected and len(set(ids)) == expected, (sorted(ids), proc.stderr[-2000:])
    assert_no_overlap(records)
    assert_lab_clean(tmp_path, beanstalkd.port)
    # one log line per decision, a summary per tick
    assert "start job" in proc.stderr and "finished (exit 0)" in proc.stderr
    assert " started, " in proc.stderr and "solver" in proc.stderr
