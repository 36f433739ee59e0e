"""`optialloc serve` as an operator runs it: one per lab, SIGTERM hand-over, SIGHUP reload."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO
from serve_support import (
    assert_no_overlap,
    env_without_crash,
    job_body,
    put_bodies,
    read_records,
    record_command,
    wait_for,
)

from optialloc.errors import ExitCode
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.runners.process import read_pid, wrapper_alive


def _setup(
    tmp_path: Path,
    jobs: int = 0,
    duration: str = "0.1",
    body_extra: dict[str, object] | None = None,
    **values: object,
) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    config = {
        "state_dir": str(state),
        "tick_seconds": 0.3,
        "locked_by": "optialloc@cli",
        "runner_command": record_command(tmp_path / "records.txt"),
        **values,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    body = job_body(run="run", owner="o", duration=duration, **(body_extra or {}))
    put_bodies(state, [body] * jobs)
    return path


def _start(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "optialloc", "--config", str(config), "serve", *extra],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            cwd=REPO,
            env=env_without_crash(),
        )


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optialloc", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env_without_crash(),
    )


def test_second_serve_on_the_same_state_is_refused_and_names_the_holder(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    log = tmp_path / "first.log"
    first = _start(config, log)
    try:
        wait_for(lambda: "serve: started" in log.read_text(), what="first serve started")
        second = _run(config, "serve", "--exit-on-empty-queue")
        assert second.returncode == ExitCode.CONFLICT
        assert "another optialloc serve already serves" in second.stderr
        assert f"pid {first.pid}@" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0


def test_sigterm_leaves_jobs_running_and_the_next_serve_adopts_them(tmp_path: Path) -> None:
    config = _setup(tmp_path, jobs=3, duration="2")
    log = tmp_path / "first.log"
    first = _start(config, log)
    archive = tmp_path / "state" / "archive"

    def launched() -> list[str]:
        return [
            os.path.dirname(p) for p in glob.glob(str(archive / "*" / "*" / "optialloc.attempt"))
        ]

    wait_for(
        lambda: len(launched()) == 3 and all(read_pid(p) for p in launched()), what="3 launches"
    )
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0
    assert "no more launches" in log.read_text()
    alive = [p for p in launched() if wrapper_alive(read_pid(p) or 0, p)]
    assert len(alive) == 3, "SIGTERM must not stop running jobs"

    second = _run(config, "serve", "--exit-on-empty-queue")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("adopted pid") == 3
    records = read_records(tmp_path / "records.txt")
    assert sorted(r[0] for r in records) == ["1", "2", "3"]
    assert_no_overlap(records)
    inventory = EmbeddedInventory(str(tmp_path / "state" / "inventory.sqlite"), "optialloc@cli")
    assert [n.name for n in inventory.nodes() if n.locked] == []  # locks carry owners
    inventory.close()


def test_sighup_reloads_the_policy_and_keeps_the_old_one_when_the_file_is_bad(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "models" / "default.yaml", policy)
    config = _setup(tmp_path, policy=str(policy))
    log = tmp_path / "serve.log"
    proc = _start(config, log)
    try:
        wait_for(lambda: "serve: started" in log.read_text(), what="serve started")
        data = yaml.safe_load(policy.read_text())
        data["name"] = "reloaded-policy"
        policy.write_text(yaml.safe_dump(data))
        proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "policy reloaded" in log.read_text() and "reloaded-policy" in log.read_text(),
            what="policy reloaded",
        )
        policy.write_text("weights: {scale: -5}\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "not reloaded, keeping the old one" in log.read_text(),
            what="bad policy refused",
        )
        assert proc.poll() is None, "a bad policy must not stop the dispatcher"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert "weights.scale" in log.read_text()


def test_serve_with_no_config_runs_on_the_embedded_default(tmp_path: Path) -> None:
    env = env_without_crash()
    env.pop("OPTIALLOC_CONFIG", None)
    env["OPTIALLOC_STATE_DIR"] = str(tmp_path / "state")
    job = tmp_path / "job.yaml"
    job.write_text("roles: [[osd.0], [osd.1]]\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "optialloc", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )

    assert (
        run("schedule", str(job), "--name", "r", "--machine-type", "smithi", "-N", "2").returncode
        == 0
    )
    served = run("serve", "--exit-on-empty-queue", "--tick-seconds", "0.3")
    assert served.returncode == 0, served.stderr[-3000:]
    assert served.stderr.count("finished (exit 0)") == 2
    from optialloc.dispatch.journal import Journal

    journal = Journal(str(tmp_path / "state" / "journal.sqlite"))
    assert sorted((r.state, r.exit_status) for r in journal.all_rows()) == [
        ("done", 0),
        ("done", 0),
    ]
    journal.close()


def test_demo_serves_its_jobs_and_prints_a_summary(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "optialloc",
            "demo",
            "--jobs",
            "6",
            "--no-progress",
            "--state-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env_without_crash(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "demo finished: 6 jobs run (6 passed, 0 failed)" in proc.stdout  # --jobs 6: 6 in all
    assert "utilization:" in proc.stdout and " % of up nodes" in proc.stdout
    assert "per owner:" in proc.stdout


def test_exit_on_empty_queue_is_not_held_up_by_a_job_that_can_never_run(tmp_path: Path) -> None:
    config = _setup(tmp_path, jobs=1)
    body = job_body(run="run", owner="o", machine_type="no-such-type", duration="0.1")
    (stuck,) = put_bodies(tmp_path / "state", [body])
    proc = _run(config, "serve", "--exit-on-empty-queue")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"job {stuck} waits: invalid" in proc.stderr
    queue = EmbeddedQueue(str(tmp_path / "state" / "queue.sqlite"))
    assert [job.job_id for job in queue.pending()] == [stuck]  # left queued, not dropped
    queue.close()
    assert len(read_records(tmp_path / "records.txt")) == 1


def test_serve_learns_runtimes_and_plan_dry_run_reads_them(tmp_path: Path) -> None:
    # Two passed runs of one description (10.5 s each, over runtimes.MIN_RUNTIME_S):
    # serve keeps their estimate in state_dir, and the live dry-run snapshot carries it.
    description = "rados/basic/{clusters/fixed-1 tasks/radosbench}"
    config = _setup(tmp_path, jobs=2, duration="10.5", body_extra={"description": description})
    served = _run(config, "serve", "--exit-on-empty-queue")
    assert served.returncode == 0, served.stderr[-3000:]
    from optialloc.dispatch.runtimes import RuntimeHistory

    history = RuntimeHistory(tmp_path / "state" / "runtimes.sqlite")
    assert history.runs(description) == 2
    assert 10.0 <= history.estimates()[description] <= 30.0
    history.close()
    dumped = tmp_path / "now.yaml"
    plan = _run(config, "plan", "--dry-run", "--dump-snapshot", str(dumped))
    assert plan.returncode == 0, plan.stderr[-3000:]
    snapshot = yaml.safe_load(dumped.read_text())
    assert 10.0 <= snapshot["runtime_estimates"][description] <= 30.0
