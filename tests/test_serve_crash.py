"""Crash tests: `kill -9` the dispatcher at every commit step and at random moments.

After each crash a fresh `optialloc serve --exit-on-empty-queue` must finish
the work with every job run exactly once (from the jobs' own records), no
node used twice at once, no lock left and nothing left claimed in the queue.
Crash points are injected with `OPTIALLOC_CRASH_AT=<step>:<n>` (see
`optialloc.dispatch.commit`); random kills use SIGKILL from the test.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from serve_support import (
    assert_no_overlap,
    env_without_crash,
    job_body,
    mixed_bodies,
    put_bodies,
    read_records,
    record_command,
    run_serve,
    serve_cmd,
)

from optialloc.dispatch.commit import STEPS
from optialloc.dispatch.journal import Journal
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.queue.embedded import EmbeddedQueue

pytestmark = pytest.mark.slow


def setup_lab(tmp_path: Path, jobs: int, seed: int = 0) -> tuple[Path, int]:
    """An embedded lab (demo nodes) with `jobs` queued 1-3-node jobs; returns the config path."""
    state = tmp_path / "state"
    config = {
        "state_dir": str(state),
        "tick_seconds": 0.3,
        "locked_by": "optialloc@crash",
        "runner_command": record_command(tmp_path / "records.txt"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    state.mkdir()
    put_bodies(state, mixed_bodies(jobs, random.Random(seed)))
    return path, jobs


def finish_and_check(tmp_path: Path, config: Path, expected: int) -> None:
    proc = run_serve(config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_records(tmp_path / "records.txt")
    ids = sorted(r[0] for r in records)
    assert len(ids) == expected and len(set(ids)) == expected, (ids, proc.stderr[-3000:])
    assert_no_overlap(records)
    state = tmp_path / "state"
    inventory = EmbeddedInventory(str(state / "inventory.sqlite"), "optialloc@crash")
    assert [n.name for n in inventory.nodes() if n.locked] == [], "lock leaked"
    inventory.close()
    queue = EmbeddedQueue(str(state / "queue.sqlite"))
    assert (
        list(queue.pending()) == [] and list(queue.claimed()) == [] and list(queue.buried()) == []
    )
    queue.close()
    journal = Journal(str(state / "journal.sqlite"))
    assert journal.open_rows() == []
    journal.close()


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_commit_step_then_restart_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, step: str
) -> None:
    config, expected = setup_lab(tmp_path, 8)
    crashed = run_serve(config, crash_at=f"{step}:2")
    assert crashed.returncode == -signal.SIGKILL, (step, crashed.returncode, crashed.stderr[-2000:])
    assert f"crash point {step} reached" in crashed.stderr
    finish_and_check(tmp_path, config, expected)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_kill_9_over_several_restarts(tmp_path: Path, seed: int) -> None:
    config, expected = setup_lab(tmp_path, 14, seed)
    rng = random.Random(seed)
    for _ in range(4):
        proc = subprocess.Popen(
            serve_cmd(config),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=env_without_crash(),
        )
        time.sleep(rng.uniform(0.8, 2.0))  # when to kill: random, not a timing assertion
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finish_and_check(tmp_path, config, expected)


def setup_one_node_jobs(tmp_path: Path, jobs: int) -> Path:
    """Like `setup_lab`, but every job needs one node: the first tick starts 8 at once."""
    config, _ = setup_lab(tmp_path, 0)
    body = job_body(run="run-batch", owner="scheduled_u0@x", duration="0.2")
    put_bodies(tmp_path / "state", [body] * jobs)
    return config


@pytest.mark.parametrize(
    ("crash_at", "rows_in", "locks_held"),
    [
        ("claim:2", "intent", 0),  # the claims are one transaction: all taken, none locked
        ("lock:3", "intent", 8),  # locked (one inventory transaction), none journaled `locked`
        ("prepare:4", "locked", 8),  # all journaled `locked`, four prepared
        ("launch:3", "launching", 8),  # three launched, none journaled `running`
        ("running:1", "running", 8),  # the whole batch journaled `running`
    ],
)
def test_kill_in_the_middle_of_a_batch_of_starts_then_restart(
    tmp_path: Path, crash_at: str, rows_in: str, locks_held: int
) -> None:
    config = setup_one_node_jobs(tmp_path, 10)
    crashed = run_serve(config, crash_at=crash_at)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr[-2000:])
    state = tmp_path / "state"
    # What the crash left: one tick's batch of 8 starts, all in the same journal state.
    journal = Journal(str(state / "journal.sqlite"))
    rows = journal.open_rows()
    journal.close()
    assert len(rows) == 8 and {r.state for r in rows} == {rows_in}, [
        (r.job_id, r.state) for r in rows
    ]
    inventory = EmbeddedInventory(str(state / "inventory.sqlite"), "optialloc@crash")
    assert len([n for n in inventory.nodes() if n.locked]) == locks_held
    inventory.close()
    if crash_at.startswith("launch"):
        # at least three wrappers were started (launches run on a few threads, so
        # maybe more); reconcile must adopt those and tombstone the others
        attempts = [r for r in rows if (Path(r.archive_path) / "optialloc.attempt").exists()]
        assert len(attempts) >= 3, [r.archive_path for r in rows]
    finish_and_check(tmp_path, config, 10)
